"""Augmented views of training samples, for objectives that compare views (SupCon, DINO).

``data: {views: {name: signal, count: 2}}`` makes every training item ``(x, y, i, views)`` with
``views`` a ``count x ...`` stack of independent draws of the named augmentation applied to ``x``.
Draws use torch's global generator, which checkpoints save and restore. ``crop_jitter`` is the PRD
authors' Split CIFAR-100 augmentation (crop, flip, colour jitter, grayscale).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from distill.errors import ConfigError
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


@augmentations.register("crop_jitter")
def crop_jitter(padding: int = 4, flip: bool = True, brightness: float = 0.4,
                contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0,
                jitter_p: float = 0.8, grayscale_p: float = 0.2,
                mean: list[float] | None = None, std: list[float] | None = None) -> Callable:
    """RGB images (3 x H x W tensors), the PRD authors' Split CIFAR-100 views: random crop of the
    same size after zero-padding by ``padding``, horizontal flip, colour jitter (brightness,
    contrast, saturation, hue; in random order) applied with probability ``jitter_p``, grayscale
    with probability ``grayscale_p``.

    Defaults are theirs (kornia ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``,
    ``ColorJitter(0.4, 0.4, 0.4, p=0.8)``, no hue, ``RandomGrayscale(p=0.2)``). The colour
    operations act on [0, 1] intensities: with ``mean`` and ``std`` (the dataset's
    normalisation) the input is mapped back to [0, 1] first, padded with black, and normalised
    again at the end; without them the input is taken to be in [0, 1]."""
    for key, p in (("jitter_p", jitter_p), ("grayscale_p", grayscale_p)):
        if not 0 <= p <= 1:
            raise ConfigError(f"data.views.{key}", f"{key} is a probability in [0, 1], got {p}")
    if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
        raise ConfigError("data.views.mean", "give mean and std together, one value per channel")
    m = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = None if std is None else torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    colour = [v2.RandomApply([v2.ColorJitter(brightness, contrast, saturation, hue)],
                             p=jitter_p), v2.RandomGrayscale(p=grayscale_p)]

    def transform(x: torch.Tensor) -> torch.Tensor:
        u = x if m is None else (x * s + m).clamp(0, 1)
        ops = [v2.RandomCrop(tuple(x.shape[-2:]), padding=padding, fill=0)] if padding else []
        if flip:
            ops.append(v2.RandomHorizontalFlip())
        out = v2.Compose(ops + colour)(u)
        return out if m is None else (out - m) / s

    return transform
