"""Knowledge distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network").

``L_kd = T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``, batch mean. The weight warm-up of the
ND recipe is the engine's ``warmup_epochs`` on any objective.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.registry import objectives


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """T^2-scaled KL divergence from the teacher's to the student's softened distribution; the
    teacher's distribution is the target (no gradient flows into it)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()
    return kl * temperature ** 2


@objectives.register("kd")
class KD(Objective):
    """Hinton KD: T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) on the logits, default T = 4."""

    teacher_needs = frozenset({"logits"})

    def __init__(self, temperature: float = 4.0):
        super().__init__()
        self.temperature = temperature

    def bind(self, ctx):
        super().bind(ctx)
        s, t = ctx.student.logits.shape[1], ctx.teacher.logits.shape[1]
        if s != t:
            raise ConfigError(ctx.key, f"kd compares logits, but the student has {s} classes and "
                                       f"the teacher {t}; give both networks the same classes")

    def forward(self, step):
        return kd_loss(step.student.logits, step.teacher.logits, self.temperature)
