"""Deep mutual learning (Zhang et al. 2018, "Deep Mutual Learning"): the teacher is a second
network trained with the student from scratch, each learning from the labels and from the other:

``L_t = CE(z_t, y) + w * T^2 * KL(softmax(z_s / T) || softmax(z_t / T))``,

the student's side given by the file's objectives (``ce`` and ``kd`` with ``temperature: 1`` for
DML). Each network's target is the other's prediction as a constant, both from the same forward
pass, and both are updated at every step by the one optimiser; the paper's Algorithm 1 updates
one network, predicts again and then updates the other, a sequential variant we do not offer
yet. The teacher's weights and optimiser
state are part of the run's checkpoints, and its accuracy is reported as its own row."""
from __future__ import annotations

from typing import Annotated

import torch.nn.functional as F
from pydantic import Field

from distill.errors import ConfigError
from distill.registry import teachers
from distill.soft_targets import kd_loss
from students.taps import Tapped
from teachers.role import TeacherRole


@teachers.register("mutual")
class MutualTeacher(TeacherRole):
    """Co-trained peer (DML): CE on the labels + KL toward the student's prediction."""

    trainable = True
    reported = True
    needs = frozenset({"logits"})

    @classmethod
    def check(cls, spec, continual: bool) -> None:
        super().check(spec, continual)
        if continual:
            raise ConfigError("teacher.role", "a mutual teacher is trained with the student on "
                                              "one task; it does not serve task sequences")

    def __init__(self, network: Tapped,
                 kl_weight: Annotated[float, Field(ge=0, le=1e4)] = 1.0,
                 temperature: Annotated[float, Field(gt=0, le=1e4)] = 1.0):
        super().__init__(network)
        self.kl_weight, self.temperature = kl_weight, temperature

    def loss(self, step) -> dict:
        z_t, z_s = step.teacher.logits, step.student.logits
        return {"ce": F.cross_entropy(z_t, step.labels),
                "kl": self.kl_weight * kd_loss(z_t, z_s, self.temperature)}
