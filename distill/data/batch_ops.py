"""Augmentation operations on a whole batch at once (B x C x H x W images, B x C x L signals),
each sample with its own parameters, given as numbers in [0, 1) (from :class:`SampleDraws`). No
per-sample Python: a batch costs a few tensor operations whatever its size.

The colour operations follow torchvision's definitions (``adjust_brightness``, ``_contrast``,
``_saturation``, ``_hue``, ``rgb_to_grayscale``) on [0, 1] intensities."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


def per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """B values shaped to broadcast over the other dimensions of ``x``."""
    return values.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def where(chosen: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per sample: ``a`` where ``chosen`` (B bools), else ``b``."""
    return torch.where(chosen.view(-1, *([1] * (a.dim() - 1))), a, b)


@functools.lru_cache(maxsize=32)
def _window(h: int, w: int, wide: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat positions (1 x 1 x h*w) of an h x w window at the top left of rows ``wide``
    long, and of the same window mirrored left to right."""
    rows = torch.arange(h, device=device)[:, None] * wide
    cols = torch.arange(w, device=device)
    return (rows + cols).view(1, 1, h * w), (rows + (w - 1 - cols)).view(1, 1, h * w)


def pad_crop(x: torch.Tensor, padding: int, u: torch.Tensor, fill: torch.Tensor | None = None,
             mirror: torch.Tensor | None = None) -> torch.Tensor:
    """A crop of ``x``'s own size from ``x`` padded by ``padding`` on each side with ``fill`` (one
    value per channel, 0 by default): offsets ``floor(u * (2 padding + 1))`` (u: B x 2, rows then
    columns), as torchvision's ``RandomCrop(size, padding)``; the samples where ``mirror`` (B
    bools) is set also flipped left to right. One gather for the whole batch."""
    b, c, h, w = x.shape
    if padding == 0 and mirror is None:
        return x
    wide = w + 2 * padding
    padded = x.new_zeros(b, c, h + 2 * padding, wide) if fill is None else \
        fill.to(x).view(1, c, 1, 1).expand(b, c, h + 2 * padding, wide).clone()
    padded[..., padding:padding + h, padding:padding + w] = x
    offsets = (u * (2 * padding + 1)).long().clamp_(max=2 * padding)
    start = (offsets[:, 0] * wide + offsets[:, 1]).view(b, 1, 1)  # the window's top left
    window, mirrored = _window(h, w, wide, x.device)
    flat = (window if mirror is None else torch.where(mirror.view(b, 1, 1), mirrored, window)) \
        + start
    return padded.view(b, c, -1).gather(2, flat.expand(b, c, h * w)).view(b, c, h, w)


def flip(x: torch.Tensor, u: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirror the last dimension of the samples with ``u < p`` (u: B)."""
    return where(u < p, x.flip(-1), x)


def crop_boxes(u: torch.Tensor, height: int, width: int, scale: tuple[float, float],
               ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[torch.Tensor, ...]:
    """torchvision's ``RandomResizedCrop`` boxes (top, left, height, width; B each) in a
    ``height`` x ``width`` image: up to 10 tries of an area fraction in ``scale`` and a
    log-uniform aspect ratio in ``ratio`` (u: B x 40, four numbers per try), the first box that
    fits, else the whole image cut to the nearest ratio in range, centred."""
    b, area = len(u), height * width
    tries = u[:, :40].double().view(b, 10, 4)  # float64, as torchvision draws them
    target = area * (scale[0] + (scale[1] - scale[0]) * tries[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * tries[..., 1])
    cw = torch.round(torch.sqrt(target * aspect)).long()
    ch = torch.round(torch.sqrt(target / aspect)).long()
    fits = (cw > 0) & (cw <= width) & (ch > 0) & (ch <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), -1)
    pick = first.clamp(min=0)[:, None]
    cw, ch = cw.gather(1, pick)[:, 0], ch.gather(1, pick)[:, 0]
    top = (tries[..., 2].gather(1, pick)[:, 0] * (height - ch + 1)).long()
    left = (tries[..., 3].gather(1, pick)[:, 0] * (width - cw + 1)).long()
    whole = width / height
    fw, fh = ((width, int(round(width / ratio[0]))) if whole < ratio[0] else
              (int(round(height * ratio[1])), height) if whole > ratio[1] else (width, height))
    none = first < 0
    return (torch.where(none, (height - fh) // 2, top), torch.where(none, (width - fw) // 2, left),
            torch.where(none, fh, ch), torch.where(none, fw, cw))


def resized_crop(x: torch.Tensor, u: torch.Tensor, scale: tuple[float, float],
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop`` to ``x``'s own size (boxes from :func:`crop_boxes`),
    resized bilinearly as ``resize(antialias=False)``: a box is never larger than the output, so
    antialiasing would change nothing."""
    return _bilinear_boxes(x, *crop_boxes(u, x.shape[2], x.shape[3], scale, ratio))


def _bilinear_boxes(x: torch.Tensor, top, left, height, width) -> torch.Tensor:
    """Each sample's box (integer top, left, height, width) resized to ``x``'s size, as
    ``F.interpolate(box, mode="bilinear", align_corners=False)``: the source coordinate of output
    pixel j is ``(j + 0.5) * box / size - 0.5``, kept inside the box."""
    b, _, h, w = x.shape

    def coordinates(start, box, size):
        j = torch.arange(size, device=x.device, dtype=torch.float32)
        src = (j[None] + 0.5) * (box[:, None].float() / size) - 0.5
        src = torch.minimum(src.clamp(min=0), box[:, None].float() - 1) + start[:, None]
        return 2 * src / max(size - 1, 1) - 1  # grid_sample's units with align_corners=True

    ys, xs = coordinates(top, height, h), coordinates(left, width, w)
    grid = torch.stack([xs[:, None, :].expand(b, h, w), ys[:, :, None].expand(b, h, w)], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", align_corners=True)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of RGB images, B x 1 x H x W (torchvision's ``rgb_to_grayscale``); a
    one-channel image is its own."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = per_sample(factor, a)
    return (f * a + (1 - f) * b).clamp(0, 1)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), factor)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the grayscale image (one-channel images have no colour: unchanged)."""
    return x if x.shape[1] == 1 else _blend(x, grayscale(x), factor)


def hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` (in turns, [-0.5, 0.5]) in HSV space (one-channel images have
    no hue: unchanged)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    top, _ = x.max(dim=1)
    bottom, _ = x.min(dim=1)
    span = top - bottom
    grey = span == 0
    sat = span / torch.where(top == 0, torch.ones_like(top), top)
    d = torch.where(grey, torch.ones_like(span), span)
    rc, gc, bc = (top - r) / d, (top - g) / d, (top - b) / d
    h = torch.where(top == r, bc - gc, torch.where(top == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(grey, torch.zeros_like(h), h)
    h = torch.fmod(h / 6.0 + 1.0, 1.0)
    h = torch.fmod(h + per_sample(shift, h) + 1.0, 1.0)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p, q, t = top * (1 - sat), top * (1 - sat * f), top * (1 - sat * (1 - f))
    choices = torch.stack([torch.stack(c, dim=1) for c in
                           ((top, t, p), (q, top, p), (p, top, t), (p, q, top), (t, p, top),
                            (top, p, q))], dim=1)  # B x 6 x 3 x H x W
    return choices.gather(1, i[:, None, None].expand(-1, 1, 3, -1, -1)).squeeze(1)


def roll(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each sample's last dimension rotated by its integer ``shift`` (``torch.roll``)."""
    length = x.shape[-1]
    source = (torch.arange(length, device=x.device)[None] - shift[:, None]) % length  # B x L
    return x.gather(-1, source.view(len(x), *([1] * (x.dim() - 2)), length).expand_as(x))
