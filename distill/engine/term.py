"""An objective's place in the engine's weighted sum."""
from __future__ import annotations

from dataclasses import dataclass

from distill.objectives.base import Objective


@dataclass
class Term:
    """An objective in the sum: ``weight * min(1, (epoch + first) / warmup_epochs) * loss``,
    epochs counted from 0: with ``first`` 0 the first epoch's weight is 0 (the ND authors' ramp),
    with 1 it is 1/warmup (mdistiller counts epochs from 1, so DKD's ramp)."""

    label: str
    objective: Objective
    weight: float = 1.0
    warmup_epochs: int = 0
    first: int = 0

    def weight_at(self, epoch: int) -> float:
        if self.warmup_epochs <= 0:
            return self.weight
        return self.weight * min(1.0, (epoch + self.first) / self.warmup_epochs)
