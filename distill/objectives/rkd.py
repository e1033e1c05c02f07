"""Relational knowledge distillation (Park et al. 2019, "Relational Knowledge Distillation"), as in
mdistiller: the student's embeddings keep the teacher's pairwise distances and triplet angles,

``L = w_d * smoothL1(psi_D(s), psi_D(t)) + w_a * smoothL1(psi_A(s), psi_A(t))``,
``psi_D(e)_ij = |e_i - e_j| / mu``, mu the mean of the non-zero distances of the batch,
``psi_A(e)_ijk = <(e_i - e_j)/|e_i - e_j|, (e_k - e_j)/|e_k - e_j|>`` over every triplet,

on the penultimate features (mdistiller's ``pooled_feat``), flattened; the teacher's side is a
constant."""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from distill.objectives.base import Objective
from distill.registry import objectives

EPS = 1e-12  # mdistiller's PDIST.EPSILON: squared distances are clamped to it before the root


def pairwise_distances(e: torch.Tensor) -> torch.Tensor:
    """B x B Euclidean distances, 0 on the diagonal, each squared distance at least EPS."""
    square = e.pow(2).sum(dim=1)
    d = (square[:, None] + square[None, :] - 2 * e @ e.t()).clamp(min=EPS).sqrt()
    return d * (1 - torch.eye(len(e), dtype=d.dtype, device=d.device))


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(e)
    positive = d[d > 0]
    return d / positive.mean() if positive.numel() else d


def _angles(e: torch.Tensor) -> torch.Tensor:
    """B^3 cosines of the angle at j between i and k, for every (j, i, k)."""
    directions = F.normalize(e[None, :] - e[:, None], p=2, dim=2)  # [j, i] = e_i - e_j
    return torch.bmm(directions, directions.transpose(1, 2)).flatten()


def rkd_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor,
             distance_weight: float = 25.0, angle_weight: float = 50.0) -> torch.Tensor:
    """``w_d * L_distance + w_a * L_angle`` for B x ... embeddings (flattened to B x D each, the
    two sides may differ in D). A batch of one has no pair: both terms are 0."""
    s = student_embedding.flatten(1)
    t = teacher_embedding.detach().flatten(1)
    with torch.no_grad():
        t_distances, t_angles = _normalised_distances(t), _angles(t)
    distance = F.smooth_l1_loss(_normalised_distances(s), t_distances)
    angle = F.smooth_l1_loss(_angles(s), t_angles)
    return distance_weight * distance + angle_weight * angle


@objectives.register("rkd")
class RKD(Objective):
    """RKD: distance (weight 25) and angle (weight 50) relations of the penultimate features."""

    student_needs = frozenset({"features"})
    relates_samples = True
    teacher_needs = frozenset({"features"})

    def __init__(self, distance_weight: Annotated[float, Field(ge=0, le=1e6)] = 25.0,
                 angle_weight: Annotated[float, Field(ge=0, le=1e6)] = 50.0):
        super().__init__()
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def forward(self, step):
        return rkd_loss(step.student.features, step.teacher.features, self.distance_weight,
                        self.angle_weight)
