"""The stage's checkpoint (``checkpoints/last.ckpt``), written at the end of a training epoch
when ``seconds`` of training have passed since the last one (``0``: every epoch) and always
after the stage's last epoch. A run interrupted at any moment resumes from the last one written,
to the same numbers; the interval bounds the training it repeats, and on epochs of a fraction of
a second it spares most of the writes (each gathers, serialises and syncs the whole state)."""
from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch.callbacks import Checkpoint


class EpochCheckpoint(Checkpoint):
    """Lightning calls a ``Checkpoint`` after the module's own ``on_train_epoch_end``, so the
    checkpoint holds everything the epoch did; the file is written through the trainer's
    checkpoint IO (atomically, :class:`~distill.engine.checkpoint_io.SafeCheckpointIO`)."""

    def __init__(self, path: str | Path, seconds: float = 0.0, clock=time.monotonic):
        self.path, self.seconds, self.clock = Path(path), seconds, clock
        self.written_at = clock()

    @property
    def state_key(self) -> str:
        return "EpochCheckpoint"

    def on_train_start(self, trainer, pl_module):
        self.written_at = self.clock()

    def on_train_epoch_end(self, trainer, pl_module):
        due = last_epoch(trainer) or self.clock() - self.written_at >= self.seconds
        # the first process's clock decides for all: saving is collective (a process that saved
        # alone would wait for the others at the save's barrier)
        if trainer.strategy.broadcast(due):
            trainer.save_checkpoint(self.path)
            self.written_at = self.clock()


def last_epoch(trainer) -> bool:
    """Whether the fit stops after the epoch now ending (its epochs, steps or a stop request;
    Lightning's ``fit_loop.done``, which would also move ``current_epoch`` on)."""
    loop = trainer.fit_loop
    return (0 <= trainer.max_epochs <= loop.epoch_progress.current.processed
            or 0 <= trainer.max_steps <= trainer.global_step or trainer.should_stop)
