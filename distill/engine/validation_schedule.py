"""Which epochs measure the test set: every ``every``-th and always the last, so a run's final
numbers are those of its final weights (Lightning's ``check_val_every_n_epoch`` skips the last
epoch when it is not a multiple)."""
from __future__ import annotations

from lightning.pytorch.callbacks import Callback


def validates(epoch: int, every: int, max_epochs: int) -> bool:
    """Whether 0-based ``epoch`` ends with a validation."""
    return (epoch + 1) % every == 0 or epoch + 1 >= max_epochs


class ValidationSchedule(Callback):
    """Sets the Trainer's epoch check at the start of each epoch, from the epoch alone, so a
    resumed run validates the same epochs as an uninterrupted one."""

    def __init__(self, every: int):
        self.every = every

    def on_train_epoch_start(self, trainer, pl_module):
        epoch = trainer.current_epoch
        due = validates(epoch, self.every, trainer.max_epochs)
        # Lightning validates when (epoch + 1) % check_val_every_n_epoch == 0; the module may
        # take the pass itself
        trainer.check_val_every_n_epoch = 1 if pl_module.schedule_test_pass(due) else epoch + 2
