"""Progress: Lightning's rich bar on a terminal, one plain line per epoch otherwise (CI, nohup)."""
from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import Callback, RichProgressBar


class EpochLine(Callback):
    """Prints ``[run] epoch 3/30  loss 0.812  val/acc 71.20  (2.1 s)`` after each epoch (the task
    kind's headline validation value: ``val/acc``, ``val/rsum``; on epochs that measured the test
    set)."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stdout
        self.started = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero:  # one line per epoch, however many processes train
            return
        m = trainer.callback_metrics
        parts = [f"[{self.label}] epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        headline = f"val/{pl_module.kind.headline}" if hasattr(pl_module, "kind") else "val/acc"
        validated = getattr(pl_module, "validated_epoch", None) == trainer.current_epoch
        for key, fmt in (("train/loss", ".4f"), (headline, ".2f")):
            if key in m and (key != headline or validated):
                parts.append(f"{key} {float(m[key]):{fmt}}")
        parts.append(f"({time.perf_counter() - self.started:.1f} s)")
        print("  ".join(parts), file=self.stream, flush=True)


def progress_callbacks(label: str, interactive: bool) -> list[Callback]:
    return [RichProgressBar(leave=False)] if interactive else [EpochLine(label)]
