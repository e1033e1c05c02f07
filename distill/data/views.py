"""Augmentations of training batches: a dataset's own (CIFAR's crop and flip) and the named
ones that make augmented views for objectives that compare views (SupCon, DINO).

An augmentation maps a batch to a batch, ``augment(x, draws, stream)``: its randomness comes
from ``draws`` (:class:`SampleDraws`) in its own ``stream``, so a sample's augmented input is a
function of (seed, epoch, sample index) alone, whatever the worker count, the batch or a resume.
``data: {views: {name: signal, count: 2}}`` makes every training batch ``(x, y, i, views)`` with
``views`` B x count x ... (view k drawn in stream k + 1; the dataset's own augmentation of x is
stream 0). ``crop_jitter`` is the PRD authors' Split CIFAR-100 augmentation (crop, flip, colour
jitter, grayscale).
"""
from __future__ import annotations

from typing import Callable

import torch

from distill.data import batch_ops as ops
from distill.data.sample_draws import SampleDraws
from distill.errors import ConfigError
from distill.registry import augmentations

Augment = Callable[[torch.Tensor, SampleDraws, int], torch.Tensor]
NOISE = 1 << 30  # the stream of an augmentation's noise, apart from its parameters'


def crop_flip(padding: int = 4, fill: torch.Tensor | None = None, flip: bool = True) -> Augment:
    """Random crop of the same size after padding by ``padding`` (with ``fill`` per channel),
    then a horizontal flip with probability 1/2: CIFAR's standard augmentation."""

    def augment(x: torch.Tensor, draws: SampleDraws, stream: int) -> torch.Tensor:
        u = draws.uniform(stream, 3)
        return ops.pad_crop(x, padding, u[:, :2], fill, u[:, 2] < 0.5 if flip else None)

    return augment


@augmentations.register("signal")
def signal(max_shift: int = 3, scale: float = 0.1, noise: float = 0.05) -> Augment:
    """1-d signals (mnist1d): circular shift by up to ``max_shift`` positions, amplitude scale
    ``1 +- scale`` and Gaussian noise of std ``noise``."""

    def augment(x: torch.Tensor, draws: SampleDraws, stream: int) -> torch.Tensor:
        u = draws.uniform(stream, 2)
        shift = (u[:, 0] * (2 * max_shift + 1)).long().clamp(max=2 * max_shift) - max_shift
        gain = 1 + scale * (2 * u[:, 1] - 1)
        out = ops.roll(x, shift) * ops.per_sample(gain, x)
        if noise:
            out = out + noise * draws.normal(stream + NOISE, x[0].numel()).view_as(x)
        return out

    return augment


@augmentations.register("image")
def image(crop_scale: tuple[float, float] = (0.5, 1.0), flip: bool = True,
          noise: float = 0.0) -> Augment:
    """Images (B x C x H x W): random resized crop to the same size, horizontal flip, optional
    Gaussian noise (SimCLR-style views without colour operations, which need RGB)."""
    lo, hi = crop_scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError("data.views.crop_scale", f"crop_scale must be two fractions "
                                                   f"0 < low <= high <= 1, got {list(crop_scale)}")

    def augment(x: torch.Tensor, draws: SampleDraws, stream: int) -> torch.Tensor:
        u = draws.uniform(stream, 41)
        out = ops.resized_crop(x, u[:, :40], (lo, hi))
        if flip:
            out = ops.flip(out, u[:, 40])
        if noise:
            out = out + noise * draws.normal(stream + NOISE, x[0].numel()).view_as(x)
        return out

    return augment


@augmentations.register("crop_jitter")
def crop_jitter(padding: int = 4, flip: bool = True, brightness: float = 0.4,
                contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0,
                jitter_p: float = 0.8, grayscale_p: float = 0.2,
                mean: list[float] | None = None, std: list[float] | None = None) -> Augment:
    """RGB images (B x 3 x H x W), the PRD authors' Split CIFAR-100 views: random crop of the
    same size after zero-padding by ``padding``, horizontal flip, colour jitter (brightness,
    contrast, saturation, hue; in a random order per sample) applied with probability
    ``jitter_p``, grayscale with probability ``grayscale_p``.

    Defaults are theirs (kornia ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``,
    ``ColorJitter(0.4, 0.4, 0.4, p=0.8)``, no hue, ``RandomGrayscale(p=0.2)``). The colour
    operations act on [0, 1] intensities: with ``mean`` and ``std`` (the dataset's
    normalisation) the input is mapped back to [0, 1] first, padded with black, and normalised
    again at the end; without them the input is taken to be in [0, 1]."""
    for key, p in (("jitter_p", jitter_p), ("grayscale_p", grayscale_p)):
        if not 0 <= p <= 1:
            raise ConfigError(f"data.views.{key}", f"{key} is a probability in [0, 1], got {p}")
    if not 0 <= hue <= 0.5:
        raise ConfigError("data.views.hue", f"hue is a spread in [0, 0.5], got {hue}")
    if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
        raise ConfigError("data.views.mean", "give mean and std together, one value per channel")
    m = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    # torchvision's ColorJitter: factors uniform in [max(0, 1 - v), 1 + v], hue in [-v, v]
    colour = [(op, lo, hi) for op, lo, hi in
              ((ops.brightness, max(0.0, 1 - brightness), 1 + brightness),
               (ops.contrast, max(0.0, 1 - contrast), 1 + contrast),
               (ops.saturation, max(0.0, 1 - saturation), 1 + saturation),
               (ops.hue, -hue, hue)) if hi != lo]

    def augment(x: torch.Tensor, draws: SampleDraws, stream: int) -> torch.Tensor:
        u = draws.uniform(stream, 5 + 2 * len(colour))
        x01 = x if m is None else (x * s.to(x) + m.to(x)).clamp(0, 1)
        out = ops.pad_crop(x01, padding, u[:, :2], mirror=u[:, 2] < 0.5 if flip else None)
        if colour:
            jitter = u[:, 3] < jitter_p
            order = u[:, 5:5 + len(colour)].argsort(dim=1)  # a random order per sample
            factors = u[:, 5 + len(colour):]
            for slot in range(len(colour)):
                for k, (op, lo, hi) in enumerate(colour):
                    chosen = jitter & (order[:, slot] == k)
                    if bool(chosen.any()):
                        out = ops.where(chosen, op(out, lo + (hi - lo) * factors[:, k]), out)
        if grayscale_p > 0:
            out = ops.where(u[:, 4] < grayscale_p, ops.grayscale(out).expand_as(out), out)
        return out if m is None else (out - m.to(x)) / s.to(x)

    return augment
