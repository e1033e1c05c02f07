"""Image-text matching with hard negatives (ALBEF, Li et al. 2021), how a cross encoder learns its
joint score: every image with its own caption (relevant), with a caption drawn from the batch's
irrelevant ones with probability ``softmax(s_i)`` of the network's embedding scores (hard), and
every caption with an image drawn the same way; binary cross-entropy on the joint scores,
``L = mean over the 3B pairs of BCEWithLogits(match(image, caption), relevant)``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.registry import objectives


def draw_hard(scores: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """For each row, one column drawn with probability softmax(scores) over its irrelevant
    columns (torch's generator); a row with none draws uniformly."""
    weights = F.softmax(scores.detach().float(), dim=1).masked_fill(relevant, 0.0)
    empty = weights.sum(1) == 0
    weights[empty] = 1.0
    return torch.multinomial(weights, 1).squeeze(1)


@objectives.register("itm")
class ImageTextMatching(Objective):
    """Image-text matching with embedding-mined hard negatives, for a cross encoder (retrieval)."""

    student_needs = frozenset({"embedding", "text_embedding"})
    relates_samples = True
    uses_labels = True
    task_kinds = frozenset({"retrieval"})

    def bind(self, ctx):
        super().bind(ctx)
        if not getattr(ctx.student_net.net, "fused", False):
            raise ConfigError(ctx.key, "itm trains a joint (image, caption) score; the network "
                                       "has none: use a cross_encoder, or itc for a dual encoder")

    def forward(self, step):
        scorer, keys = step.extra["student_scores"], step.labels
        relevant = keys[:, None] == keys[None, :]
        coarse = scorer.similarity()
        rows = torch.arange(len(keys), device=keys.device)
        hard_text = draw_hard(coarse, relevant)
        hard_image = draw_hard(coarse.T, relevant.T)
        images = torch.cat([rows, rows, hard_image])
        texts = torch.cat([rows, hard_text, rows])
        target = torch.cat([torch.ones_like(rows), torch.zeros_like(rows), torch.zeros_like(rows)])
        scores = scorer.net.match(scorer.images[images], scorer.texts[texts])
        return F.binary_cross_entropy_with_logits(scores, target.to(scores.dtype))
