"""Stand-ins for the datasets read from files, for ``distill validate --without-data``: a few
random samples of each set's declared input shape and classes, so that every other check (names,
networks and their shapes, teacher against student, objectives, recipes) runs on a machine
without the data. What only the data decide (a caption vocabulary built from the training
captions) has a stand-in size too, said in the one line ``validate`` prints."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import TensorDataset

from distill.data.base import Splits

STAND_INS: dict[str, Callable[..., tuple[Splits, str]]] = {}


def stand_in(name: str):
    """Register ``fn(**the dataset's parameters) -> (splits, description)`` for dataset ``name``."""
    def register(fn):
        STAND_INS[name] = fn
        return fn
    return register


def shaped(input_shape: tuple, num_classes: int, augmented: bool = False) -> Splits:
    """Two samples per class of ``input_shape``, random values, for train and test alike."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(num_classes).repeat(2)
    x = torch.randn(len(labels), *input_shape, generator=generator)
    return Splits(TensorDataset(x, labels), TensorDataset(x, labels), labels, labels, num_classes,
                  tuple(input_shape), augmented=augmented)


def shape_text(input_shape: tuple, num_classes: int) -> str:
    return f"{'x'.join(map(str, input_shape))}, {num_classes} classes"
