"""Class-imbalanced subsets of a training set: the exponential long-tail profile (CIFAR-LT)."""
from __future__ import annotations

import torch
from torch import Tensor

from distill.errors import UserError


def long_tail_indices(targets: Tensor, num_classes: int, imbalance: float, seed: int) -> Tensor:
    """Indices of a long-tailed subset, as in CIFAR-10/100-LT (Cui et al. 2019; Cao et al. 2019).

    Class ``c`` of ``C`` keeps ``n_c = int(n_max * imbalance ** (c / (C - 1)))`` of its samples,
    where ``n_max`` is the size of the largest class and ``imbalance = n_min / n_max`` (0.01 is the
    "imbalance ratio 100" benchmark). A class smaller than ``n_c`` keeps all its samples. Which
    samples are kept depends on ``seed`` alone. Returns the kept indices, sorted.
    """
    if not 0 < imbalance <= 1:
        raise UserError(f"imbalance must be n_min / n_max, in (0, 1]; got {imbalance}")
    targets = torch.as_tensor(targets).cpu()
    counts = torch.bincount(targets, minlength=num_classes)[:num_classes]
    by_class = torch.argsort(targets, stable=True).split(counts.tolist())
    n_max = int(counts.max())
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for c, members in enumerate(by_class):
        n_c = min(int(n_max * imbalance ** (c / max(num_classes - 1, 1))), len(members))
        kept.append(members[torch.randperm(len(members), generator=generator)[:n_c]])
    return torch.cat(kept).sort().values
