"""The task split of a class-incremental sequence: a dataset's classes in some order, cut into
consecutive groups, one group per task (Split MNIST, Split CIFAR-100)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from distill.config.schema import Experiment
from distill.data.base import DataModule
from distill.errors import ConfigError


@dataclass(frozen=True)
class TaskSequence:
    """``classes[t]``: the classes of task t, in the order they are met; every class in one task."""

    classes: tuple[tuple[int, ...], ...]
    num_classes: int

    @classmethod
    def split(cls, num_classes: int, tasks: int, order: list[int] | str | None = None,
              seed: int = 0) -> "TaskSequence":
        """``num_classes`` classes in ``order`` (a list: that permutation; ``"seed"``: a random
        permutation drawn from ``seed``; None: 0..C-1) cut into ``tasks`` groups whose sizes differ
        by at most one (the first ones larger)."""
        if tasks > num_classes:
            raise ConfigError("continual.tasks", f"{tasks} tasks need at least {tasks} classes, "
                                                 f"but the dataset has {num_classes}")
        if order == "seed":
            sequence = torch.randperm(num_classes,
                                      generator=torch.Generator().manual_seed(seed)).tolist()
        elif order is None:
            sequence = list(range(num_classes))
        else:
            sequence = list(order)
            if sorted(sequence) != list(range(num_classes)):
                raise ConfigError("continual.order", f"the order lists every class once: a "
                                                     f"permutation of 0..{num_classes - 1}")
        groups = [tuple(part.tolist()) for part in torch.tensor(sequence).tensor_split(tasks)]
        return cls(tuple(groups), num_classes)

    def __len__(self) -> int:
        return len(self.classes)

    def seen(self, task: int) -> list[int]:
        """The classes of tasks 0..task."""
        return [c for group in self.classes[:task + 1] for c in group]

    def members(self, targets: torch.Tensor, task: int) -> torch.Tensor:
        """Positions of ``targets`` whose class belongs to ``task``."""
        return torch.isin(targets, torch.tensor(self.classes[task])).nonzero().flatten()


def task_sequence(exp: Experiment, num_classes: int, seed: int) -> TaskSequence:
    """The task sequence of ``exp``'s ``continual:`` section for a dataset of ``num_classes``."""
    spec = exp.continual
    return TaskSequence.split(num_classes, spec.tasks, spec.order, seed)


def check_continual(exp: Experiment, data: DataModule) -> TaskSequence | None:
    """The task sequence of ``exp`` for its first seed (None when it is not continual), after
    refusing what a task sequence cannot do."""
    if exp.continual is None:
        return None
    if exp.evaluate:
        raise ConfigError("evaluate", "a continual run reports its accuracy matrix; evaluators "
                                      "run on single-stage runs only")
    return task_sequence(exp, data.num_classes, exp.seeds[0])
