"""R@K equals torchmetrics' hit rate on a random case with several captions per image, in both
directions, whatever the chunk size."""
from __future__ import annotations

import pytest
import torch
from torchmetrics.retrieval import RetrievalHitRate

from distill.evaluation.retrieval_recall import hit_rates


def torchmetrics_hit_rate(scores, query_keys, gallery_keys, k):
    metric = RetrievalHitRate(top_k=k)
    q, g = scores.shape
    indexes = torch.arange(q)[:, None].expand(q, g)
    target = query_keys[:, None] == gallery_keys[None, :]
    return 100.0 * metric(scores.flatten(), target.flatten(), indexes=indexes.flatten()).item()


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_r_at_k_is_the_hit_rate_both_directions(chunk):
    g = torch.Generator().manual_seed(0)
    images, per_image = 30, 5
    image_keys = torch.arange(images) % 12  # several images share a caption's content
    caption_keys = image_keys.repeat_interleave(per_image)
    scores = torch.randn(images, images * per_image, generator=g)
    scores += 2.0 * (image_keys[:, None] == caption_keys[None, :])  # better than chance
    i2t = hit_rates(lambda rows: scores[rows], images, image_keys, caption_keys, chunk=chunk)
    t2i = hit_rates(lambda rows: scores.T[rows], len(caption_keys), caption_keys, image_keys,
                    chunk=chunk)
    for k in (1, 5, 10):
        assert i2t[k] == pytest.approx(torchmetrics_hit_rate(scores, image_keys, caption_keys, k))
        assert t2i[k] == pytest.approx(torchmetrics_hit_rate(scores.T, caption_keys, image_keys, k))
    assert 0 < i2t[1] < i2t[5] <= i2t[10] <= 100


def test_perfect_scores_give_100_and_a_gallery_smaller_than_k_is_fine():
    keys = torch.arange(4)
    scores = torch.eye(4)
    assert hit_rates(lambda rows: scores[rows], 4, keys, keys, ks=(1, 5, 10)) == \
        {1: 100.0, 5: 100.0, 10: 100.0}
    assert hit_rates(lambda rows: -scores[rows], 4, keys, keys, ks=(1,))[1] == 0.0
