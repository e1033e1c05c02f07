"""QCRD's discriminator (Wang et al. 2024): D(x, r), the probability that ``r`` is a good rationale
for problem ``x``. Both token sequences are embedded (tokens, positions, which side), read by one
transformer encoder layer, max-pooled over the real tokens and scored by two linear layers. One
attention head by default: at this width, four heads of 8 dimensions cost 3.5x the time of one of
32 on a CPU (torch 2.14, 1 thread), for a network the paper describes only as a small encoder."""
from __future__ import annotations

import torch
from torch import nn

from students.attention import slow_path


class RationaleDiscriminator(nn.Module):
    def __init__(self, vocab_size: int, length: int, dim: int = 64, heads: int = 1):
        super().__init__()
        self.heads = heads
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.positions = nn.Embedding(length, dim)
        self.sides = nn.Embedding(2, dim)
        self.encoder = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0,
                                                  batch_first=True)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))

    def embed(self, ids: torch.Tensor, side: int) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.tokens(ids) + self.positions(positions) + self.sides.weight[side]

    def forward(self, sources: torch.Tensor, rationales: torch.Tensor) -> torch.Tensor:
        """B logits of D(x, r)."""
        x = torch.cat([self.embed(sources, 0), self.embed(rationales, 1)], dim=1)
        real = torch.cat([sources, rationales], dim=1) != 0
        with slow_path(x.device):
            h = self.encoder(x, src_key_padding_mask=~real)
        pooled = h.masked_fill(~real[..., None], float("-inf")).amax(dim=1)
        return self.head(pooled).squeeze(-1)
