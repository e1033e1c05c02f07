"""The last k snapshots of a network's weights, oldest first, kept in checkpoints (QCRD's
self-adversarial negatives come from the student k rounds back)."""
from __future__ import annotations

import torch
from torch import nn


class SnapshotRing:
    def __init__(self, size: int):
        self.size = size
        self.states: list[dict[str, torch.Tensor]] = []

    def push(self, net: nn.Module) -> None:
        """Keep a copy of ``net``'s weights; the oldest leaves when more than ``size`` are kept."""
        self.states.append({k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
        del self.states[:-self.size]

    @property
    def full(self) -> bool:
        return len(self.states) == self.size

    def oldest(self) -> dict[str, torch.Tensor]:
        return self.states[0]
