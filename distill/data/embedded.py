"""Datasets that ship with installed packages and need no download: mnist1d and scikit-learn digits."""
from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from distill.data.base import Splits
from distill.data.generated_cache import generated_arrays
from distill.registry import datasets


def _tensor_splits(x, y, x_test, y_test, num_classes: int) -> Splits:
    x, x_test = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(x_test, dtype=torch.float32)
    y, y_test = torch.as_tensor(y, dtype=torch.long), torch.as_tensor(y_test, dtype=torch.long)
    return Splits(TensorDataset(x, y), TensorDataset(x_test, y_test), y, y_test,
                  num_classes, tuple(x.shape[1:]))


@datasets.register("mnist1d")
def mnist1d(num_samples: Annotated[int, Field(ge=20)] = 5000,
            train_split: Annotated[float, Field(gt=0, lt=1)] = 0.8,
            seed: Annotated[int, Field(ge=0, le=2 ** 32 - 1)] = 42) -> Splits:
    """mnist1d (Greydanus 2020): 1-d digit templates, 40 points; the published 4000/1000 split.
    Made once per machine for these values and kept (:mod:`distill.data.generated_cache`); its
    key names the packages by their installed versions, so reading it back imports neither
    mnist1d nor SciPy (1 s)."""
    from importlib.metadata import version

    values = {"num_samples": num_samples, "train_split": train_split, "seed": seed}

    def make():
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        for name, value in values.items():
            setattr(args, name, value)
        return make_dataset(args)

    # mnist1d's other settings are its version's defaults; it interpolates and filters with SciPy
    key = {"mnist1d": version("mnist1d"), "numpy": np.__version__, "scipy": version("scipy"),
           "args": values}
    d = generated_arrays("mnist1d", key, ("x", "y", "x_test", "y_test"), make)
    return _tensor_splits(d["x"], d["y"], d["x_test"], d["y_test"], 10)


@datasets.register("digits")
def digits(test_fraction: Annotated[float, Field(ge=0.01, le=0.9)] = 0.2,
           seed: Annotated[int, Field(ge=0, le=2 ** 32 - 1)] = 0) -> Splits:
    """scikit-learn digits: 1797 real 8x8 handwritten digits, stratified train/test split, 1x8x8."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed,
                                              stratify=y)
    return _tensor_splits(x_tr, y_tr, x_te, y_te, 10)
