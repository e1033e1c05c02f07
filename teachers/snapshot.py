"""The snapshot teacher of continual learning: the student as it was at the end of the previous
task, frozen (LwF, Li & Hoiem 2016; PRD, Asadi et al. 2023). Before the first task there is none:
the objectives that read it contribute nothing during task 0."""
from __future__ import annotations

import torch
from torch import nn

from distill.errors import ConfigError
from distill.registry import teachers
from teachers.role import TeacherRole


@teachers.register("snapshot")
class SnapshotTeacher(TeacherRole):
    """The student frozen at the previous task's end, with any objective state paired to it."""

    def __init__(self, network: nn.Module):
        super().__init__(network)
        self.pairs: list[tuple[nn.Module, nn.Module]] = []  # (frozen copy, live part)

    def track(self, teacher_part: nn.Module, student_part: nn.Module) -> None:
        """Pair a frozen copy with the live part it snapshots: the network with the student, and
        objective state such as PRD's prototypes."""
        t_state, s_state = teacher_part.state_dict(), student_part.state_dict()
        if t_state.keys() != s_state.keys() or any(t_state[k].shape != s_state[k].shape
                                                   for k in t_state):
            raise ConfigError("teacher.net", "a snapshot teacher is the student itself at the end "
                                             "of the previous task: leave teacher.net out")
        self.pairs.append((teacher_part, student_part))

    @torch.no_grad()
    def take(self) -> None:
        """Copy every live part into its frozen copy (called when a task after the first starts)."""
        for teacher_part, student_part in self.pairs:
            teacher_part.load_state_dict(student_part.state_dict())


def require_snapshot(ctx, name: str) -> None:
    """Refuse an objective that learns from earlier tasks (``ctx``: its BindContext) outside a
    continual run or without the snapshot teacher."""
    if ctx.tasks is None:
        raise ConfigError(ctx.key, f"{name} learns a sequence of tasks; add a `continual:` section")
    if not isinstance(ctx.teacher_role, SnapshotTeacher):
        raise ConfigError(ctx.key, f"{name} distils from the model of the previous task; add "
                                   f"`teacher: {{role: snapshot}}`")
