"""The training terms' means over an epoch, kept by the module instead of logged at every step:
Lightning's ``log`` costs about a millisecond a call on CPU, more than a small network's step."""
from __future__ import annotations

import torch


class EpochMeans:
    """Per name, the mean over the epoch's samples of the values added with their batch sizes
    (Lightning's ``on_epoch`` mean weighted by ``batch_size``); ``means()`` starts a new epoch."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, torch.Tensor], batch_size: int) -> None:
        for name, value in values.items():
            value = value.detach().float()
            if name in self.sums:  # one operation a step, in place on the module's own sum
                self.sums[name].add_(value, alpha=batch_size)
            else:
                self.sums[name] = value * batch_size
            self.counts[name] = self.counts.get(name, 0) + batch_size

    def means(self) -> dict[str, torch.Tensor]:
        out = {name: total / self.counts[name] for name, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        return out
