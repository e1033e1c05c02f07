"""The random-number state of Python, NumPy and torch (CPU and every CUDA device) as a checkpoint
entry that ``torch.load(..., weights_only=True)`` accepts: plain ints, floats, lists and tensors.

A run resumed from a checkpoint restores it, so dropout masks and augmented views continue exactly
where the interrupted run stood at that checkpoint.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def capture_rng() -> dict:
    """The current state of every global generator."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": version, "state": list(words), "gauss": gauss},
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict) -> None:
    """Put every global generator back to ``state`` (from :func:`capture_rng`)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], np.asarray(npy["keys"], dtype=np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
