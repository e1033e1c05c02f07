"""The data of one task: the experiment's data module restricted to that task's classes, in both
the train and the test set."""
from __future__ import annotations

import torch

from distill.continual.tasks import TaskSequence
from distill.data.base import DataModule
from distill.errors import UserError


def task_data(base: DataModule, tasks: TaskSequence, task: int, seed: int) -> DataModule:
    """``base`` (with any subset it already has, e.g. a long-tail profile) restricted to the
    classes of ``task``, of ``base``'s class; ``seed`` fixes its data order."""
    splits = base.splits
    train = base.train_set.indices
    train = torch.arange(len(splits.train)) if train is None else train
    train = train[tasks.members(splits.train_targets[train], task)]
    test = base.test_set.indices
    test = torch.arange(len(splits.test)) if test is None else test
    test = test[tasks.members(splits.test_targets[test], task)]
    if len(train) == 0 or len(test) == 0:
        which = "training" if len(train) == 0 else "test"
        raise UserError(f"task {task} (classes {list(tasks.classes[task])}) has no {which} "
                        f"samples; check the dataset or use fewer tasks")
    return type(base)(splits, base.batch_size, base.num_workers, seed, base.eval_batch_size,
                      train_index=train, test_index=test, views=base.views)
