"""Cross-entropy on the labels: the baseline every comparison needs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.registry import objectives


@objectives.register("ce")
class CrossEntropy(Objective):
    """Cross-entropy of the student's logits with the labels, optional label smoothing.

    ``within_task: true`` takes only the current task's classes of a continual sequence (the
    multi-head training of task-incremental learning, Li & Hoiem's new-task loss).

    On a generation set: the token-mean cross-entropy of the label sequence given the ``predict:``
    source (label-only fine-tuning, the step-by-step authors' standard baseline)."""

    uses_labels = True
    task_kinds = frozenset({"classification", "generation"})

    def __init__(self, label_smoothing: float = 0.0, within_task: bool = False):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.within_task = within_task
        self.classes: tuple[tuple[int, ...], ...] = ()

    def bind(self, ctx):
        if ctx.task_kind == "generation":  # the label sequence is scored, not class logits
            self.student_needs = frozenset()
        super().bind(ctx)
        if ctx.task_kind == "generation":
            for name, value in (("label_smoothing", self.label_smoothing),
                                ("within_task", self.within_task)):
                if value:
                    raise ConfigError(f"{ctx.key}.{name}", f"{name} applies to class labels; "
                                                           f"remove it on a generation set")
        if self.within_task:
            if ctx.tasks is None:
                raise ConfigError(ctx.key, "within_task: true needs a `continual:` section")
            self.classes = ctx.tasks.classes

    def forward(self, step):
        if "student_seq" in step.extra:
            return step.extra["student_seq"].nll(step.inputs, step.labels).mean()
        logits, labels = step.student.logits, step.labels
        if self.within_task:
            own = torch.tensor(self.classes[step.task], device=logits.device)
            logits, labels = logits[:, own], (labels[:, None] == own).int().argmax(dim=1)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
