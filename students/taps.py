"""Taps: forward hooks by module path, so any network gives a ModelOutput without code changes.

A tap names a module by its dotted path (``layer3``, ``classifier.6``) and which side of it to read:
``"fc:input"`` is the input of ``fc`` (the penultimate features of a classifier), ``"layer3"`` or
``"layer3:output"`` its output. A ``[k:]`` suffix drops the first k entries of dim 1, e.g. a ViT's
class token: ``"encoder[1:]"``. A tap named after a ModelOutput field fills it (``features``
flattened, ``tokens`` as B x N x D: a B x D x H x W map becomes B x (H*W) x D); any other name is a
layer kept in its own shape (``ModelOutput.layers``), for objectives that read layers by name.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from distill.contracts import FIELDS, ModelOutput
from distill.errors import UserError
from distill.registry import nearest


FILLED = ("features", "tokens", "embedding")  # the fields a tap may fill
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
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

    ``taps`` maps a name to a tap spec: a ModelOutput field (features, tokens, embedding;
    ``features`` flattened to B x D, ``tokens`` through :func:`as_tokens`) or a layer name of the
    file's choosing (kept as it is, in ``ModelOutput.layers``).
    """

    def __init__(self, net: nn.Module, taps: dict[str, str]):
        super().__init__()
        self.net = net
        self.taps = dict(taps)
        self._seen: dict[str, torch.Tensor] = {}
        self._skip: dict[str, int] = {}
        self._hooks = []  # their handles (untap)
        modules = dict(net.named_modules())
        for field, spec in self.taps.items():
            if not _NAME.fullmatch(str(field)) or (field in FIELDS and field not in FILLED):
                raise UserError(f"tap name {str(field)[:40]!r}: a tap fills "
                                f"{', '.join(FILLED)} or names a layer (letters, digits, _; not "
                                f"{', '.join(f for f in FIELDS if f not in FILLED)}, which the "
                                f"network's forward gives)")
            path, side, self._skip[field] = parse_tap(spec)
            if path not in modules:
                raise UserError(f"tap {field}={spec!r}: the network has no module {path!r}"
                                f"{nearest(path, [m for m in modules if m])}; `distill list "
                                f"--modules NET` prints its module paths")
            if side == "input":
                hook = modules[path].register_forward_pre_hook(self._keep_input(field))
            else:
                hook = modules[path].register_forward_hook(self._keep_output(field))
            self._hooks.append(hook)

    def untap(self) -> nn.Module:
        """The network with this wrapper's hooks removed (to be tapped anew)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        return self.net

    def _keep_input(self, field):
        def hook(module, args):
            self._seen[field] = args[0]
        return hook

    def _keep_output(self, field):
        def hook(module, args, output):
            self._seen[field] = output[0] if isinstance(output, (tuple, list)) else output
        return hook

    def forward(self, *inputs: torch.Tensor) -> ModelOutput:
        self._seen.clear()  # (a dict of its own: no nn.Module attribute set at every step)
        result = self.net(*inputs)
        seen = {f: t[:, self._skip[f]:] if self._skip[f] else t for f, t in self._seen.items()}
        self._seen.clear()
        out = result if isinstance(result, ModelOutput) else ModelOutput(logits=result)
        if "features" in seen:
            out.features = seen["features"].flatten(1)
        if "tokens" in seen:
            out.tokens = as_tokens(seen["tokens"])
        if "embedding" in seen:
            out.embedding = seen["embedding"].flatten(1)
        out.layers = {name: t for name, t in seen.items() if name not in FILLED}
        return out
