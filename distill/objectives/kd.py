"""Knowledge distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network").

``L_kd = T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``, batch mean. The weight warm-up of the
ND recipe is the engine's ``warmup_epochs`` on any objective.
"""
from __future__ import annotations

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.registry import objectives
from distill.soft_targets import kd_loss


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
