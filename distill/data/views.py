"""Augmented views of training samples, for objectives that compare views (SupCon, DINO).

``data: {views: {name: signal, count: 2}}`` makes every training item ``(x, y, i, views)`` with
``views`` a ``count x ...`` stack of independent draws of the named augmentation applied to ``x``.
Draws use torch's global generator, which checkpoints save and restore.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from distill.registry import augmentations


class WithViews(Dataset):
    """Items of ``data`` (x, y, i) with ``count`` augmented views of x appended."""

    def __init__(self, data: Dataset, transform: Callable, count: int):
        self.data, self.transform, self.count = data, transform, count

    def __len__(self):
        return len(self.data)

    def __getitem__(self, k):
        x, y, i = self.data[k]
        return x, y, i, torch.stack([self.transform(x) for _ in range(self.count)])


@augmentations.register("signal")
def signal(max_shift: int = 3, scale: float = 0.1, noise: float = 0.05) -> Callable:
    """1-d signals (mnist1d): circular shift by up to ``max_shift`` positions, amplitude scale
    ``1 +- scale`` and Gaussian noise of std ``noise``."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        shift = int(torch.randint(-max_shift, max_shift + 1, ()))
        gain = 1 + scale * (2 * torch.rand(()) - 1)
        return torch.roll(x, shift, dims=-1) * gain + noise * torch.randn_like(x)

    return transform


@augmentations.register("image")
def image(crop_scale: tuple[float, float] = (0.5, 1.0), flip: bool = True,
          noise: float = 0.0) -> Callable:
    """Images (C x H x W tensors): random resized crop to the same size, horizontal flip,
    optional Gaussian noise (SimCLR-style views without colour operations, which need RGB)."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        ops = [v2.RandomResizedCrop(tuple(x.shape[-2:]), scale=tuple(crop_scale), antialias=True)]
        if flip:
            ops.append(v2.RandomHorizontalFlip())
        out = v2.Compose(ops)(x)
        return out + noise * torch.randn_like(out) if noise else out

    return transform
