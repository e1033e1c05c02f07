"""The record an objective reads at each training step."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from students.output import ModelOutput


@dataclass
class Step:
    """One training batch with both models' outputs and where training is.

    ``epoch`` counts from 0; ``max_epochs`` is the stage's length; ``task`` is the continual
    learning task index (0 outside continual runs). ``student_views`` / ``teacher_views`` hold one
    ModelOutput per augmented view when an objective uses views (``data.views``); ``extra``
    carries anything else a data module adds.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    student: ModelOutput
    teacher: ModelOutput | None
    epoch: int
    max_epochs: int
    global_step: int
    task: int = 0
    student_views: list[ModelOutput] | None = None
    teacher_views: list[ModelOutput] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
