"""Consecutive batches handed to Lightning as one item, so that one Lightning step takes several
optimiser steps (training) or measures several test batches (validation).

Lightning's Trainer costs about half a millisecond of Python per step (hooks, progress, loop
bookkeeping) on a CPU, whatever the step computes: more than a small network's whole step. The
engine's ``training_step`` takes every batch of a :class:`BatchGroup` in order, each its own
optimiser step, so the numbers are those of one batch per step and only Lightning's bookkeeping
is paid once per group; its ``validation_step`` measures each batch of a group in turn. Groups
are sized by bytes (:func:`group_size`: a budget of batch tensors, at most :data:`MOST`
batches), so large batches stay one to a step.
"""
from __future__ import annotations

import torch

MOST = 64  # batches in a group at most


class BatchGroup(list):
    """Training batches to take one after another in one Lightning step (a list, so Lightning's
    device transfer moves each)."""


class BatchGroups:
    """The batches of ``loader`` in groups of ``size``; ``len`` counts groups, ``batches`` the
    batches of an epoch. ``sampler`` and ``batch_sampler`` are the loader's (Lightning tells the
    sampler the epoch, and reads both to tell whether a test set's loader shuffles)."""

    def __init__(self, loader, size: int):
        self.loader, self.size = loader, size

    @property
    def sampler(self):
        return self.loader.sampler

    @property
    def batch_sampler(self):
        return self.loader.batch_sampler

    @property
    def batches(self) -> int:
        return len(self.loader)

    def __len__(self) -> int:
        return -(-len(self.loader) // self.size)

    def __iter__(self):
        group = BatchGroup()
        for batch in self.loader:
            group.append(batch)
            if len(group) == self.size:
                yield group
                group = BatchGroup()
        if group:
            yield group


def item_bytes(item) -> int:
    """The bytes of every tensor in a dataset item, however nested in tuples and lists."""
    if isinstance(item, torch.Tensor):
        return item.nbytes
    return sum(item_bytes(part) for part in item) if isinstance(item, (tuple, list)) else 0


def group_size(item: tuple, batch_size: int, budget: int) -> int:
    """How many batches of ``batch_size`` samples like ``item`` (a dataset item: its tensors,
    nested or not) fit in ``budget`` bytes: at least 1, at most :data:`MOST`."""
    per_sample = item_bytes(item) or 1
    return max(1, min(MOST, budget // (per_sample * batch_size)))
