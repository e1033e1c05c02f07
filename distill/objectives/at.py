"""Attention transfer (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention"), as in
the authors' code and mdistiller: per layer pair, the spatial attention map
``Q(f) = normalize(mean_c(|f|^p) flattened)`` of student and teacher,

``L = sum_pairs mean((Q(f_s) - Q(f_t))^2)``,

the larger map average-pooled to the smaller one's size first. Weight 1000 by default
(mdistiller's and RepDistiller's CIFAR-100 value; the original code's beta/2 = 500)."""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from distill.objectives.layer_pairs import LayerPairObjective, Pairs, pooled_to
from distill.registry import objectives


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """B x (H*W): the channel mean of ``|f|^p``, flattened and L2-normalised per sample (the
    paper's |A|^p; the authors' code writes f^p, the same for their p = 2)."""
    return F.normalize(f.abs().pow(p).mean(dim=1).flatten(1))


def at_loss(student_map: torch.Tensor, teacher_map: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Mean squared difference of the attention maps of two B x C x H x W (or B x C x L) maps of
    equal spatial size (channels may differ); no gradient reaches the teacher."""
    return (attention_map(student_map, p) - attention_map(teacher_map.detach(), p)).pow(2).mean()


@objectives.register("at")
class AttentionTransfer(LayerPairObjective):
    """AT over layer pairs (``pairs: [[s1, t1], [s2, t2], [s3, t3]]``), p = 2, weight 1000."""

    default_weight = 1000.0

    def __init__(self, pairs: Pairs, p: Annotated[float, Field(gt=0, le=16)] = 2.0):
        super().__init__(pairs)
        self.p = p

    def forward(self, step):
        return sum(at_loss(*pooled_to(step.student.get(s), step.teacher.get(t)), self.p)
                   for s, t in self.pairs)
