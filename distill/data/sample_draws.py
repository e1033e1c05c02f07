"""Random numbers that are a function of (seed, epoch, sample index, stream) alone: the draws of
an augmentation do not depend on the order samples are loaded in, on the number of loader
workers, on the batch a sample falls in, or on whether the run was resumed.

A counter-based generator: each number is a 32-bit hash (Wellons' ``lowbias32``) of its key,
computed on int64 tensors for a whole batch at once; 24 bits of it make a float in [0, 1)."""
from __future__ import annotations

import math

import torch

MASK = 0xFFFFFFFF
GOLDEN = 0x9E3779B9  # spreads consecutive counters over the 32-bit range


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Wellons' lowbias32 of 32-bit values held in int64. Each product wraps around in int64
    arithmetic; its low 32 bits, all that is kept, are the exact product's."""
    x = x ^ (x >> 16)
    x.mul_(0x7FEB352D).bitwise_and_(MASK)
    x ^= x >> 15
    x.mul_(0x846CA68B).bitwise_and_(MASK)
    return x ^ (x >> 16)


def hash32_int(x: int) -> int:
    """:func:`hash32` of one Python int (the keys shared by a whole batch)."""
    x &= MASK
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK
    return x ^ (x >> 16)


class SampleDraws:
    """The draws of one batch: ``uniform(stream, count)`` gives B x count numbers in [0, 1), row b
    a function of (seed, epoch, index[b], stream) only; ``normal`` the same for N(0, 1).

    Number j of stream s for sample i is ``hash(hash(i ^ k) ^ c)`` with ``k = hash(hash(seed) ^
    epoch)`` and ``c = hash(hash(s) + j * golden)``: two tensor hashes per batch."""

    def __init__(self, seed: int, epoch: int, index: torch.Tensor):
        base = hash32_int(hash32_int(seed) ^ (epoch & MASK))
        self.keys = hash32((index.long() & MASK) ^ base)  # B

    def uniform(self, stream: int, count: int = 1) -> torch.Tensor:
        start = hash32_int(stream)
        if count <= 64:  # a few parameters: cheaper in Python than as tensor operations
            counters = torch.tensor([hash32_int(start + j * GOLDEN) for j in range(count)],
                                    device=self.keys.device)
        else:  # noise, one number per element
            counters = hash32((start + torch.arange(count, device=self.keys.device) * GOLDEN)
                              & MASK)
        bits = hash32(self.keys[:, None] ^ counters)
        return (bits >> 8).float() * 2.0 ** -24

    def normal(self, stream: int, count: int) -> torch.Tensor:
        """Box-Muller from two uniforms per number."""
        u = self.uniform(stream, 2 * count)
        radius = torch.sqrt(-2 * torch.log1p(-u[:, :count]))  # 1 - u in (0, 1]
        return radius * torch.cos(2 * math.pi * u[:, count:])
