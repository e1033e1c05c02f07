"""A network's module paths with the shape of each module's output, for choosing taps
(``distill list --modules NET``)."""
from __future__ import annotations

import torch
from torch import nn

from distill.errors import UserError


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3x32x32"`` -> (3, 32, 32): one sample's input shape."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or not all(1 <= s <= 4096 for s in shape) or len(shape) > 4:
        raise UserError(f"--input {text[:40]!r}: give one sample's shape as numbers 1-4096 "
                        f"joined by x, e.g. 3x32x32 (image) or 1x40 (sequence)")
    return shape


def module_shapes(net: nn.Module, sample: torch.Tensor) -> list[tuple[str, str, str]]:
    """(path, module type, output shape) of every named module, in the order they are
    registered, from one forward pass of ``sample`` (a batch of 2) in eval mode."""
    shapes: dict[str, str] = {}
    hooks = []
    for path, module in net.named_modules():
        if not path:
            continue

        def keep(module, args, output, path=path):
            out = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(out, torch.Tensor):
                shapes[path] = " x ".join(["B", *map(str, out.shape[1:])])
        hooks.append(module.register_forward_hook(keep))
    net.eval()
    try:
        with torch.no_grad():
            net(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return [(path, type(module).__name__, shapes.get(path, "not called"))
            for path, module in net.named_modules() if path]
