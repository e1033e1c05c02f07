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

``weighting: none`` is the authors' released code (``meter/modules/KD_loss.py``): it reduces the
MSE over the whole batch before weighting, and the weights sum to 1, so ``L_d = T^2 * MSE`` over
all scores.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


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
