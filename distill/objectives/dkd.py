"""Decoupled knowledge distillation (Zhao et al. 2022, "Decoupled Knowledge Distillation"), as in
the authors' mdistiller: KD split into the target class's binary distribution and the
distribution over the other classes,

``L = alpha * TCKD + beta * NCKD``,
``TCKD = T^2 * KL([p_t^gt, 1 - p_t^gt] || [p_s^gt, 1 - p_s^gt])``,
``NCKD = T^2 * KL(p̂_t || p̂_s)``, p̂ the softmax of z / T over the non-target classes only,

batch means, p = softmax(z / T). Weighted up linearly over its first 20 epochs, 1/20 in the
first (mdistiller's ``WARMUP``, epochs from 1; the whole run when it is shorter), through the
engine's ``warmup_epochs``."""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.registry import objectives
from distill.soft_targets import kl_divergence


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0) -> torch.Tensor:
    """alpha * TCKD + beta * NCKD on B x C logits (C >= 2) and B labels; no gradient reaches the
    teacher. Log-probabilities of the binary and the non-target distributions are computed from
    log-softmax (mdistiller takes the log of probabilities and masks the target with -1000, the
    same numbers where those do not underflow)."""
    teacher_logits = teacher_logits.detach()
    target = F.one_hot(labels, student_logits.shape[1]).bool()

    def binary(logits):  # B x 2 log-probabilities of (target, any other class)
        log_p = F.log_softmax(logits / temperature, dim=1)
        return torch.stack([log_p[target], log_p.masked_fill(target, float("-inf"))
                            .logsumexp(dim=1)], dim=1)

    def others(logits):  # B x (C-1) log-softmax over the non-target classes
        return F.log_softmax(logits[~target].view(len(logits), -1) / temperature, dim=1)

    tckd = kl_divergence(binary(teacher_logits), binary(student_logits))
    nckd = kl_divergence(others(teacher_logits), others(student_logits))
    return (alpha * tckd + beta * nckd) * temperature ** 2


@objectives.register("dkd")
class DKD(Objective):
    """Decoupled KD: alpha * TCKD + beta * NCKD, default alpha 1, beta 8, T = 4, a 20-epoch
    warm-up (mdistiller's CIFAR-100 defaults)."""

    teacher_needs = frozenset({"logits"})
    uses_labels = True
    default_warmup = 20
    warmup_first_epoch = 1  # mdistiller: min(epoch / 20, 1), epochs from 1

    def __init__(self, alpha: Annotated[float, Field(ge=0, le=1e4)] = 1.0,
                 beta: Annotated[float, Field(ge=0, le=1e4)] = 8.0,
                 temperature: Annotated[float, Field(gt=0, le=1e4)] = 4.0):
        super().__init__()
        self.alpha, self.beta, self.temperature = alpha, beta, temperature

    def bind(self, ctx):
        super().bind(ctx)
        s, t = ctx.student.logits.shape[1], ctx.teacher.logits.shape[1]
        if s != t or s < 2:
            raise ConfigError(ctx.key, f"dkd splits the classes into the target and the others, "
                                       f"but the student has {s} classes and the teacher {t}; "
                                       f"give both networks the same 2 or more classes")

    def forward(self, step):
        return dkd_loss(step.student.logits, step.teacher.logits, step.labels, self.alpha,
                        self.beta, self.temperature)
