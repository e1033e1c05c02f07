"""Image-text contrastive loss (InfoNCE both ways; CLIP, Radford et al. 2021; ALBEF's ITC): within a
batch, each image must pick its captions among all captions and each caption its images, with
scores ``scale * cos`` from the network's embeddings. Pairs with the same relevance key are all
positives (several captions of one image, or of equal content): the target is uniform over them.

``L = (CE(S, P / |P|) + CE(S^T, P^T / |P^T|)) / 2``, ``S`` the B x B scores, ``P`` the positives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.objectives.base import Objective
from distill.registry import objectives


def itc_loss(scores: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over B x B image-to-caption ``scores`` with positives of equal key."""
    positive = (keys[:, None] == keys[None, :]).to(scores.dtype)
    i2t = -(positive / positive.sum(1, keepdim=True) * F.log_softmax(scores, dim=1)).sum(1)
    t2i = -(positive.T / positive.T.sum(1, keepdim=True) * F.log_softmax(scores.T, dim=1)).sum(1)
    return (i2t.mean() + t2i.mean()) / 2


@objectives.register("itc")
class ImageTextContrastive(Objective):
    """InfoNCE both ways between the student's image and caption embeddings (retrieval)."""

    student_needs = frozenset({"embedding", "text_embedding"})
    relates_samples = True
    uses_labels = True
    task_kinds = frozenset({"retrieval"})

    def forward(self, step):
        return itc_loss(step.extra["student_scores"].similarity(), step.labels)
