"""Loading network weights from a file: ``torch.load(..., weights_only=True)`` only."""
from __future__ import annotations

from pathlib import Path

import torch

from distill.errors import UserError, shorten
from students.taps import Tapped

PREFIXES = ("student.net.", "network.net.", "net.", "model.", "module.")


def load_weights(net: Tapped, path: str | Path, key: str = "teacher.checkpoint") -> None:
    """Load a state dict into ``net.net`` from ``path``: a plain state dict, a dict with
    ``state_dict`` (our teacher files and Lightning checkpoints), with common prefixes removed."""
    p = Path(path)
    net_key = key.rsplit(".", 1)[0] + ".net"  # teacher.checkpoint -> teacher.net
    if p.is_dir():
        raise UserError(f"checkpoint {str(p)!r} is a folder; give the weights file in it",
                        key=key)
    if not p.is_file():
        raise UserError(f"checkpoint {str(p)!r} does not exist; train the teacher first or fix the "
                        f"path", key=key)
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupted or not a torch file
        raise UserError(f"checkpoint {str(p)!r} cannot be read ({type(e).__name__}); it is "
                        f"corrupted or not a weights-only torch file", key=key) from None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise UserError(f"checkpoint {str(p)!r} holds no state dict (names mapped to tensors)",
                        key=key)
    own = net.net.state_dict()
    for prefix in ("",) + PREFIXES:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if picked.keys() == own.keys():
            break
    else:
        missing = sorted(set(own) - set(state))[:3]
        extra = sorted(set(state) - set(own))[:3]
        what = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
        raise UserError(f"checkpoint {str(p)!r} does not fit the teacher network (e.g. "
                        f"{shorten(what)}); check {net_key}", key=key)
    bad = [k for k in own if picked[k].shape != own[k].shape]
    if bad:
        raise UserError(f"checkpoint {str(p)!r} does not fit the teacher network: {bad[0]} has "
                        f"shape {tuple(picked[bad[0]].shape)}, the network "
                        f"{tuple(own[bad[0]].shape)}; check {net_key}", key=key)
    broken = next((k for k, v in picked.items()
                   if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if broken is not None:
        raise UserError(f"checkpoint {str(p)!r} holds NaN or infinite values ({shorten(broken)}); "
                        f"it comes from a run that diverged: train the teacher again", key=key)
    net.net.load_state_dict(picked)
