"""Recall at K for retrieval, in the sense of the image-text literature: the share of queries with
at least one relevant item among the top K (torchmetrics' ``RetrievalHitRate(top_k=K)``, not
``RetrievalRecall``). Galleries are ranked in chunks of queries, so memory stays bounded by
``chunk x gallery`` scores whatever the gallery's size."""
from __future__ import annotations

from typing import Callable

import torch


def hit_rates(score_rows: Callable[[slice], torch.Tensor], num_queries: int,
              query_keys: torch.Tensor, gallery_keys: torch.Tensor, ks=(1, 5, 10),
              chunk: int = 1024) -> dict[int, float]:
    """``{K: % of queries with a relevant item in their top K}``. ``score_rows(rows)`` gives the
    scores of those queries against the whole gallery (rows x gallery); query i and gallery item
    j are relevant to each other when ``query_keys[i] == gallery_keys[j]``."""
    top = min(max(ks), len(gallery_keys))
    hits = {k: 0 for k in ks}
    for start in range(0, num_queries, chunk):
        rows = slice(start, min(start + chunk, num_queries))
        ranked = score_rows(rows).topk(top, dim=1).indices
        relevant = gallery_keys[ranked] == query_keys[rows, None]
        for k in ks:
            hits[k] += int(relevant[:, :k].any(dim=1).sum())
    return {k: 100.0 * hits[k] / num_queries for k in ks}
