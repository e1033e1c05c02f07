"""Candidate captions for each query image of a batch, shared by the retrieval objectives that
score lists of candidates (score distillation, DCD): the query's own caption first, then random
captions of the batch that are not relevant to it (another relevance key)."""
from __future__ import annotations

import math

import torch
from torch import nn


def sample_candidates(keys: torch.Tensor, count: int) -> torch.Tensor:
    """B x ``count`` caption rows of the batch: row i starts with i (its own caption), then
    ``count - 1`` distinct random rows whose key differs from ``keys[i]`` (torch's generator).
    A batch with fewer such rows fills the remaining columns with relevant rows; keep ``count``
    well below the batch size."""
    noise = torch.rand(len(keys), len(keys), device=keys.device)
    noise = noise.masked_fill(keys[:, None] == keys[None, :], -1.0)
    negatives = noise.topk(count - 1, dim=1).indices
    own = torch.arange(len(keys), device=keys.device)[:, None]
    return torch.cat([own, negatives], dim=1)


def check_candidates(ctx, count: int) -> None:
    """Refuse more candidates per query than a batch holds captions (ConfigError at bind)."""
    from distill.errors import ConfigError

    batch = ctx.experiment.data.batch_size if ctx.experiment is not None else None
    if batch is not None and count > batch:
        raise ConfigError(f"{ctx.key}.candidates",
                          f"{count} candidates per query, but a batch holds {batch} captions; "
                          f"lower candidates or raise data.batch_size")


def hardest(teacher_scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Columns (B x ``keep``) of the teacher's hardest candidates: the positive (column 0) first,
    then the ``keep - 1`` negatives the teacher scores highest, in its order. The same as keeping
    the teacher's top ``keep`` and forcing the positive in (the DCD authors' selection)."""
    negatives = teacher_scores[:, 1:].topk(keep - 1, dim=1).indices + 1
    return torch.cat([torch.zeros_like(negatives[:, :1]), negatives], dim=1)


class StudentScoreHead(nn.Module):
    """The student's scores for a distillation loss on candidate lists: a dual encoder's cosines
    through a head of its own, ``a * cos + b`` (a and b learnt; 1/0.07 and 0 to start), like the
    score head the DCD authors' students have; its contrastive loss keeps the network's own
    scale, so matching the teacher's logits does not pull on that temperature. A cross encoder
    student's joint scores are used as they are."""

    def __init__(self):
        super().__init__()
        self.log_a = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, scorer, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if scorer.fused:
            return scorer(q, c)
        return self.log_a.exp() * scorer.cosine(q, c) + self.b
