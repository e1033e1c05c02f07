"""Stand-ins for the datasets read from files, for ``distill validate --without-data``: a few
random samples of each set's declared input shape and classes, so that every other check (names,
networks and their shapes, teacher against student, objectives, recipes) runs on a machine
without the data. What only the data decide (a caption vocabulary built from the training
captions) has a stand-in size too, said in the one line ``validate`` prints."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset

from distill.data.base import Splits

STAND_INS: dict[str, Callable[..., tuple[Splits, str]]] = {}


def stand_in(name: str):
    """Register ``fn(**the dataset's parameters) -> (splits, description)`` for dataset ``name``."""
    def register(fn):
        STAND_INS[name] = fn
        return fn
    return register


class Shaped(Dataset):
    """Two samples per class, item i of class ``i % num_classes``; its input one of 8 random
    tensors of ``input_shape``, so a set of many classes of large images costs 8 images."""

    def __init__(self, input_shape: tuple, num_classes: int):
        self.inputs = torch.randn(8, *input_shape, generator=torch.Generator().manual_seed(0))
        self.targets = torch.arange(num_classes).repeat(2)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.inputs[i % len(self.inputs)], self.targets[i]


def shaped(input_shape: tuple, num_classes: int, augmented: bool = False) -> Splits:
    """:class:`Shaped` samples of ``input_shape`` and ``num_classes``, for train and test alike."""
    data = Shaped(input_shape, num_classes)
    return Splits(data, data, data.targets, data.targets, num_classes, tuple(input_shape),
                  augmented=augmented)


def shape_text(input_shape: tuple, num_classes: int) -> str:
    return f"{'x'.join(map(str, input_shape))}, {num_classes} classes"
