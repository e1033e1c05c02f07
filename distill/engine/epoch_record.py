"""An epoch's values (the training terms' means, the test metrics) handed on as Lightning's
``LightningModule.log(name, value, on_epoch=True)`` hands them at an epoch's end, without its
result collection, which costs about a millisecond a value on CPU (it walks every logged value's
state at every call): to the callbacks (``trainer.callback_metrics``: the epoch line, the
checkpoint), to the progress bar, and as one row to every logger (the CSV log's row of ``epoch``,
``step`` and the values)."""
from __future__ import annotations

import torch


def as_logged(values: dict[str, torch.Tensor | float]) -> dict[str, torch.Tensor]:
    """Each value as Lightning logs it: a detached scalar tensor of the default float type (a
    Python number becomes ``torch.tensor(value)``: 21.6 is written 21.600000381469727)."""
    dtype = torch.get_default_dtype()
    return {name: value.detach().to(dtype) if isinstance(value, torch.Tensor)
            else torch.tensor(value, dtype=dtype) for name, value in values.items()}


def mean_over_processes(trainer, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Under several processes, each value's mean over them (Lightning's ``sync_dist=True`` of a
    mean: the strategy's mean reduction), in one collective; else as given."""
    if trainer.world_size == 1 or not values:
        return values
    return dict(zip(values, trainer.strategy.reduce(torch.stack(list(values.values())),
                                                    reduce_op="mean")))


def show(trainer, values: dict[str, torch.Tensor], progress: tuple[str, ...] = ()) -> None:
    """``values`` in the trainer's callback metrics; those named in ``progress`` on the progress
    bar too."""
    trainer.callback_metrics.update(values)
    trainer.progress_bar_metrics.update({k: values[k].item() for k in progress if k in values})


def write_row(trainer, values: dict[str, torch.Tensor], before_last_step: bool = False) -> None:
    """One row of ``values`` to each of the trainer's loggers, with the epoch and Lightning's
    logging step: its count of training steps taken (``before_last_step``: less the epoch's
    last, which Lightning has counted once the epoch ends and does not count for its epoch's
    row)."""
    if not trainer.loggers or not values:
        return
    step = trainer.fit_loop.epoch_loop._batches_that_stepped - int(before_last_step)
    row = {**{k: v.item() for k, v in values.items()}, "epoch": trainer.current_epoch}
    for logger in trainer.loggers:
        logger.log_metrics(metrics=row, step=step)
        logger.save()
