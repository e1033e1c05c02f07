"""What an objective may look at when it binds to the networks (``Objective.bind``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distill.contracts.model_output import ModelOutput


@dataclass
class BindContext:
    """What an objective may look at when it binds: dry-run outputs and the data."""

    student: ModelOutput
    teacher: ModelOutput | None
    num_classes: int
    key: str  # the objective's key path in the experiment file, for errors
    data: Any = None
    teacher_role: Any = None
    student_net: Any = None
    teacher_weights: str | None = None  # the teacher's weights file; per-teacher caches go beside it
    experiment: Any = None  # the resolved Experiment, e.g. to identify the training set
    tasks: Any = None  # the continual TaskSequence (None outside continual runs)
    task_kind: str = "classification"  # the dataset's task kind (its name)
