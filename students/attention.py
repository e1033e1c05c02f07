"""Attention pieces shared by incremental decoding and the networks that use PyTorch's transformer
layers: one query's scaled dot-product attention over keys and values projected once, and a switch
off the layers' inference fast path where it is slower."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


@contextmanager
def slow_path(device: torch.device):
    """On CPU, run ``nn.TransformerEncoderLayer`` in inference without its fast path, whose masked
    softmax over padded batches takes 1.3-2.5x the ordinary path's time (torch 2.14, 1 thread);
    the same numbers either way."""
    if device.type != "cpu":
        yield
        return
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)  # B x T x D -> B x H x T x D/H


def keys_values(attention: nn.MultiheadAttention,
                x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``attention``'s keys and values of ``x`` (B x T x D), each B x H x T x D/H, contiguous
    (kept over many decoding steps, they are read as they are instead of copied at each)."""
    dim = attention.embed_dim
    w, b = attention.in_proj_weight, attention.in_proj_bias
    keys = F.linear(x, w[dim:2 * dim], b[dim:2 * dim])
    values = F.linear(x, w[2 * dim:], b[2 * dim:])
    return (_split_heads(keys, attention.num_heads).contiguous(),
            _split_heads(values, attention.num_heads).contiguous())


def attend(attention: nn.MultiheadAttention, query: torch.Tensor, keys: torch.Tensor,
           values: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """``attention`` of one query position B x 1 x D over projected keys and values, ``ignore``
    (broadcast to B x H x 1 x T) masking keys out: softmax(q k^T / sqrt(d)) v, then the output
    projection."""
    dim, heads = attention.embed_dim, attention.num_heads
    q = _split_heads(F.linear(query, attention.in_proj_weight[:dim],
                              attention.in_proj_bias[:dim]), heads)
    scores = (q @ keys.transpose(-1, -2)) * (dim // heads) ** -0.5
    mixed = scores.masked_fill(ignore, float("-inf")).softmax(dim=-1) @ values
    return attention.out_proj(mixed.transpose(1, 2).flatten(2))
