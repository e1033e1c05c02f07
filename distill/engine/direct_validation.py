"""The test pass at an epoch's end taken by the module itself, where Lightning's evaluation loop
would take it (after the epoch's last training step), with the same calls on the module: its
gradients released, eval mode, ``validation_step`` on each batch (or group of batches) of the
test loader through the transfer hooks (``on_before_batch_transfer``, the move, the data
module's ``on_after_batch_transfer``), ``on_validation_epoch_end``, then every submodule's mode
put back. It leaves out the loop's fixed cost (its data fetcher, progress counters, result
collection, hooks of every callback: about 4 ms an epoch on CPU, as much as a small network's
test pass), so it is taken only where nothing listens to those hooks."""
from __future__ import annotations

import lightning as L
import torch

# the evaluation loop's hooks of a callback, and of the module, and the hook Lightning calls
# before its loop (the module's own pass comes at the end of the epoch's last step)
CALLBACK_HOOKS = ("on_validation_start", "on_validation_epoch_start", "on_validation_batch_start",
                  "on_validation_batch_end", "on_validation_epoch_end", "on_validation_end",
                  "on_train_batch_end")
MODULE_HOOKS = ("on_validation_start", "on_validation_epoch_start", "on_validation_batch_start",
                "on_validation_batch_end", "on_validation_end", "on_validation_model_train",
                "on_train_batch_end")


def validate_directly(module: L.LightningModule) -> None:
    """The test pass, as Lightning's loop takes it at a training epoch's end, on the loop's own
    test loader (made once a fit, as the loop makes it: its workers kept across epochs)."""
    trainer = module.trainer
    loop = trainer.fit_loop.epoch_loop.val_loop
    loop.setup_data()
    modes = [(m, m.training) for m in module.modules()]
    trainer.validating = True  # the data module's transfer hook leaves the batches unaugmented
    try:
        module.on_validation_model_zero_grad()
        module.on_validation_model_eval()
        with torch.inference_mode() if loop.inference_mode else torch.no_grad():
            for i, batch in enumerate(trainer.val_dataloaders):
                # the transfer hooks of the module or the data module, as Lightning's loop
                batch = module._on_before_batch_transfer(batch, dataloader_idx=0)
                module.validation_step(trainer.strategy.batch_to_device(batch, dataloader_idx=0), i)
            module.on_validation_epoch_end()
    finally:
        for m, training in modes:
            m.training = training
        trainer.training = True
