"""The record an objective reads at each training step."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from distill.contracts.model_output import ModelOutput

LAZY = ("student", "teacher", "student_views", "teacher_views")


@dataclass
class Step:
    """One training batch with both models' outputs and where training is.

    ``epoch`` counts from 0; ``max_epochs`` is the stage's length; ``task`` is the continual
    learning task index (0 outside continual runs). ``processes`` / ``rank``: in a run of several
    processes, the step of process ``rank``'s share of the global batch (1 / 0 otherwise, and for
    the gathered global batch itself, see :mod:`distill.contracts.global_batch`).
    ``student_views`` / ``teacher_views`` hold one ModelOutput per augmented view when an
    objective uses views (``data.views``); ``extra`` carries anything else a data module adds.

    The outputs can be given as ``compute={"student": fn, ...}`` instead of values: each is then
    computed on first read, so a forward pass runs only when an objective reads its result (no
    clean-input pass when every objective reads the views; BatchNorm statistics updated once).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    epoch: int
    max_epochs: int
    global_step: int
    task: int = 0
    processes: int = 1
    rank: int = 0
    student: ModelOutput | None = None
    teacher: ModelOutput | None = None
    student_views: list[ModelOutput] | None = None
    teacher_views: list[ModelOutput] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    compute: dict[str, Callable[[], Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for name in self.compute:
            if name not in LAZY:
                raise ValueError(f"Step computes only {LAZY}, not {name!r}")
            delattr(self, name)  # __getattr__ computes it on first read

    def __getattr__(self, name: str):
        compute = self.__dict__.get("compute", {})
        if name not in compute:
            raise AttributeError(name)
        value = compute[name]()
        setattr(self, name, value)
        return value

    def computed(self, name: str) -> bool:
        """Whether ``name`` has been given or computed (without computing it)."""
        return name in self.__dict__


for _name in LAZY:  # defaults live in __init__ only, so a deleted instance attribute is computed
    delattr(Step, _name)
