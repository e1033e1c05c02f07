"""Hinton's soft-target loss (Hinton et al. 2015) and the KL divergence behind it, shared by the
``kd`` and ``dkd`` objectives and the co-trained teacher of mutual learning: a module of its own
so all can import it."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """T^2-scaled KL divergence from the teacher's to the student's softened distribution; the
    teacher's distribution is the target (no gradient flows into it)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    return kl_divergence(log_p_t, log_p_s) * temperature ** 2


def kl_divergence(log_target: torch.Tensor, log_pred: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(target || pred) from log-probabilities over dim 1."""
    return (log_target.exp() * (log_target - log_pred)).sum(dim=1).mean()
