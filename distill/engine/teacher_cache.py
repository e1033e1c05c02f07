"""Outputs of a frozen teacher kept per training sample, when inputs repeat exactly between
epochs (no random augmentation): the teacher runs once over the train set instead of once per
batch of every epoch. The pass is in a fixed order and batch size, so a resumed run reads the very
same numbers."""
from __future__ import annotations

import torch

from distill.contracts import ModelOutput


class TeacherCache:
    """The needed ModelOutput fields of a frozen teacher for every training sample."""

    def __init__(self, fields: frozenset[str]):
        self.fields = fields
        self.store: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def fill(self, teacher, loader, size: int, device) -> None:
        """One pass over ``loader`` (items x, y, index into a set of ``size`` samples)."""
        self.store = {}
        for x, _, index in loader:
            out = teacher(x.to(device))
            for f in self.fields:
                value = out.get(f)
                if f not in self.store:
                    self.store[f] = value.new_zeros((size,) + tuple(value.shape[1:]))
                self.store[f][index.to(device)] = value

    def __call__(self, index: torch.Tensor) -> ModelOutput:
        return ModelOutput.of({f: self.store[f][index] for f in self.fields})
