"""Cross-entropy on the labels: the baseline every comparison needs."""
from __future__ import annotations

import torch.nn.functional as F

from distill.objectives.base import Objective
from distill.registry import objectives


@objectives.register("ce")
class CrossEntropy(Objective):
    """Cross-entropy of the student's logits with the labels, optional label smoothing."""

    uses_labels = True

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, step):
        return F.cross_entropy(step.student.logits, step.labels,
                               label_smoothing=self.label_smoothing)
