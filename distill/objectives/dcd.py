"""DCD: dynamic contrastive distillation for retrieval (Rao et al. 2023, "Dynamic Contrastive
Distillation for Image-Text Retrieval", IEEE TMM).

A slow teacher that scores (query, candidate) pairs jointly picks each query's hard negatives and
says how sure it is; the fast student learns its scores on those candidates. Per query q, with
``s_T`` / ``s_S`` the teacher's and the student's scores of the same K candidates (the positive in
column 0):

- teacher difficulty: ``p_q = softmax(s_T_q)``, ``h_q = H(p_q) / sum_q' H(p_q')`` (the query's share
  of the batch's entropy: high when the teacher is unsure);
- sample weight ``r_q = softmax_q((1 - h_q)^2)`` over the batch;
- ``L_d = T^2 * sum_q r_q * MSE(s_T_q / T, s_S_q / T)`` (per-query MSE over the K scores);
- ``L_h = sum_q h_q * BCEWithLogits(s_S_q, onehot(0))`` (mean over the K candidates);
- ``L = alpha * L_d + (1 - alpha) * L_h``, alpha = 0.2, T = 1.

The teacher scores ``candidates`` captions per query image (its own and random irrelevant ones of
the batch; the authors draw them from the dataset) and keeps the hardest ``hard_negatives`` (7)
with the positive first; teacher and student scores are compared on the same columns. (The
released code gathers the teacher's scores in the teacher's rank order but puts the positive first
for the student, so the two disagree on the columns whenever the teacher does not rank the
positive first; we align them.)

``weighting: none`` is the authors' released code (``meter/modules/KD_loss.py``): it reduces the
MSE over the whole batch before weighting, and the weights sum to 1, so ``L_d = T^2 * MSE`` over
all scores.
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.objectives.candidates import (StudentScoreHead, check_candidates, hardest,
                                           sample_candidates)
from distill.registry import objectives


def dcd_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor, alpha: float = 0.2,
             temperature: float = 1.0,
             weighting: Literal["dynamic", "none"] = "dynamic") -> dict[str, torch.Tensor]:
    """The two weighted terms ``{"distill": alpha * L_d, "hard": (1 - alpha) * L_h}`` for scores
    shaped queries x K, positive in column 0. The teacher's scores are targets (no gradient)."""
    teacher_scores = teacher_scores.detach()
    p = F.softmax(teacher_scores, dim=1)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)
    share = entropy / entropy.sum().clamp_min(1e-12)
    target = torch.zeros_like(student_scores)
    target[:, 0] = 1.0
    hard = (share * F.binary_cross_entropy_with_logits(student_scores, target,
                                                      reduction="none").mean(dim=1)).sum()
    T = temperature
    if weighting == "dynamic":
        weight = F.softmax((1 - share) ** 2, dim=0)
        per_query = F.mse_loss(student_scores / T, teacher_scores / T, reduction="none").mean(dim=1)
        distill = T * T * (weight * per_query).sum()
    else:
        distill = T * T * F.mse_loss(student_scores / T, teacher_scores / T)
    return {"distill": alpha * distill, "hard": (1 - alpha) * hard}


@objectives.register("dcd")
class DynamicContrastiveDistillation(Objective):
    """DCD (retrieval): the teacher scores each query image's ``candidates`` captions (its own
    and random irrelevant ones of the batch), keeps its ``hard_negatives`` hardest with the
    positive first; the student scores those (a dual encoder through a score head of its own,
    :class:`StudentScoreHead`); ``alpha * L_d + (1 - alpha) * L_h``."""

    student_needs = frozenset({"embedding", "text_embedding"})
    relates_samples = True
    teacher_needs = frozenset({"embedding", "text_embedding"})
    uses_labels = True
    task_kinds = frozenset({"retrieval"})

    def __init__(self, candidates: Annotated[int, Field(ge=2)] = 16,
                 hard_negatives: Annotated[int, Field(ge=1)] = 7,
                 alpha: Annotated[float, Field(ge=0, le=1)] = 0.2, temperature: float = 1.0,
                 weighting: Literal["dynamic", "none"] = "dynamic"):
        super().__init__()
        self.candidates, self.hard_negatives = candidates, hard_negatives
        self.alpha, self.temperature, self.weighting = alpha, temperature, weighting
        self.student_head = StudentScoreHead()

    def bind(self, ctx):
        super().bind(ctx)
        if self.hard_negatives + 1 > self.candidates:
            raise ConfigError(f"{ctx.key}.hard_negatives",
                              f"{self.hard_negatives} hard negatives plus the positive is more "
                              f"than the {self.candidates} candidates the teacher scores; raise "
                              f"candidates or lower hard_negatives")
        check_candidates(ctx, self.candidates)

    def forward(self, step):
        pool = sample_candidates(step.labels, self.candidates)
        q = pool[:, 0]
        teacher = step.extra["teacher_scores"](q, pool)
        keep = hardest(teacher, self.hard_negatives + 1)
        chosen = pool.gather(1, keep)
        student = self.student_head(step.extra["student_scores"], q, chosen)
        return dcd_loss(student, teacher.gather(1, keep), self.alpha, self.temperature,
                        self.weighting)
