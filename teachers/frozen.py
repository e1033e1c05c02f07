"""Frozen teachers: a trained network (from a checkpoint or the experiment's teacher stage), or a
network left at its random initialisation (Sarnthein et al. 2023, "Random Teachers are Good
Teachers")."""
from __future__ import annotations

from distill.registry import teachers
from teachers.role import TeacherRole


@teachers.register("frozen")
class FrozenTeacher(TeacherRole):
    """Trained teacher, frozen: eval mode (BatchNorm statistics fixed), no gradients."""

    weights = "given"


@teachers.register("random")
class RandomTeacher(TeacherRole):
    """Teacher at random initialisation, frozen, BatchNorm in eval mode, no EMA."""
