"""Taps: forward hooks by module path, so any network gives a ModelOutput without code changes.

A tap names a module by its dotted path (``layer3``, ``classifier.6``) and which side of it to read:
``"fc:input"`` is the input of ``fc`` (the penultimate features of a classifier), ``"layer3"`` or
``"layer3:output"`` its output. A ``[k:]`` suffix drops the first k entries of dim 1, e.g. a ViT's
class token: ``"encoder[1:]"``. Token taps turn a B x D x H x W map into B x (H*W) x D.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from distill.errors import UserError
from distill.registry import nearest
from distill.contracts import ModelOutput


_SPEC = re.compile(r"(?P<path>[^:\[\]]*)(?::(?P<side>[^\[]*))?(?:\[(?P<skip>\d+):\])?")


def parse_tap(spec: str) -> tuple[str, str, int]:
    """``path[:side][[k:]]`` -> (path, side, k)."""
    match = _SPEC.fullmatch(spec)
    if not match:
        raise UserError(f"tap {spec!r}: expected 'path', 'path:input', 'path:output', optionally "
                        f"followed by '[k:]' to drop the first k entries of dim 1")
    side = match["side"] or "output"
    if side not in ("input", "output"):
        raise UserError(f"tap {spec!r}: the side after ':' must be 'input' or 'output'")
    return match["path"], side, int(match["skip"] or 0)


def as_tokens(t: torch.Tensor) -> torch.Tensor:
    """B x D x H x W feature map -> B x (H*W) x D tokens; B x N x D passes through."""
    if t.dim() == 4:
        return t.flatten(2).transpose(1, 2)
    if t.dim() == 3:
        return t
    raise ValueError(f"a token tap needs a 3-d or 4-d tensor, got shape {tuple(t.shape)}")


class Tapped(nn.Module):
    """Wraps a network whose forward returns logits (or a ModelOutput, e.g. a dual encoder's two
    embeddings); taps fill the other fields of ModelOutput.

    ``taps`` maps a ModelOutput field (features, tokens, embedding) to a tap spec. ``features`` taps
    are flattened to B x D, ``tokens`` taps go through :func:`as_tokens`.
    """

    def __init__(self, net: nn.Module, taps: dict[str, str]):
        super().__init__()
        self.net = net
        self.taps = dict(taps)
        self._seen: dict[str, torch.Tensor] = {}
        self._skip: dict[str, int] = {}
        modules = dict(net.named_modules())
        for field, spec in self.taps.items():
            path, side, self._skip[field] = parse_tap(spec)
            if path not in modules:
                raise UserError(f"tap {field}={spec!r}: the network has no module {path!r}"
                                f"{nearest(path, [m for m in modules if m])}")
            if side == "input":
                modules[path].register_forward_pre_hook(self._keep_input(field))
            else:
                modules[path].register_forward_hook(self._keep_output(field))

    def _keep_input(self, field):
        def hook(module, args):
            self._seen[field] = args[0]
        return hook

    def _keep_output(self, field):
        def hook(module, args, output):
            self._seen[field] = output[0] if isinstance(output, (tuple, list)) else output
        return hook

    def forward(self, *inputs: torch.Tensor) -> ModelOutput:
        self._seen = {}
        result = self.net(*inputs)
        seen, self._seen = {f: t[:, self._skip[f]:] for f, t in self._seen.items()}, {}
        out = result if isinstance(result, ModelOutput) else ModelOutput(logits=result)
        if "features" in seen:
            out.features = seen["features"].flatten(1)
        if "tokens" in seen:
            out.tokens = as_tokens(seen["tokens"])
        if "embedding" in seen:
            out.embedding = seen["embedding"].flatten(1)
        return out
