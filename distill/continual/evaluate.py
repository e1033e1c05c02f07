"""Evaluation after a task: accuracy on the test set of every task seen so far, one row of the
accuracy matrix per evaluation (task-aware ``til``, task-agnostic ``cil``)."""
from __future__ import annotations

import torch

from distill.continual.task_data import task_data
from distill.continual.tasks import TaskSequence
from distill.data.base import DataModule
from distill.engine.module import DistillationModule


def evaluations(setting: str) -> tuple[str, ...]:
    """Which evaluations apply: with the task known at test time (task-incremental) both the
    task-aware and the task-agnostic one; without it (class-incremental) only task-agnostic."""
    return ("til", "cil") if setting == "task-incremental" else ("cil",)


def task_test_counts(base: DataModule, tasks: TaskSequence, task: int) -> list[int]:
    """The number of test samples of each of tasks 0..``task`` (the weights of the
    sample-weighted average accuracy)."""
    targets = base.splits.test_targets
    if base.test_set.indices is not None:
        targets = targets[base.test_set.indices]
    return [len(tasks.members(targets, j)) for j in range(task + 1)]


@torch.no_grad()
def evaluate_seen(module: DistillationModule, base: DataModule, tasks: TaskSequence, task: int,
                  kinds: tuple[str, ...], seed: int) -> dict[str, list[float]]:
    """``{kind: [acc on task 0, ..., acc on task `task`]}`` in %. Task-aware: the argmax of the
    scores (``module.predict_logits``) over the task's own classes; task-agnostic: over every class
    of tasks 0..task."""
    was_training = module.training
    module.eval()
    seen = torch.tensor(tasks.seen(task), device=module.device)
    rows: dict[str, list[float]] = {kind: [] for kind in kinds}
    for j in range(task + 1):
        own = torch.tensor(tasks.classes[j], device=module.device)
        correct, count = dict.fromkeys(kinds, 0), 0
        for x, y, _ in task_data(base, tasks, j, seed).val_dataloader():
            scores, y = module.predict_logits(x.to(module.device)), y.to(module.device)
            for kind, allowed in (("til", own), ("cil", seen)):
                if kind in kinds:
                    correct[kind] += int((allowed[scores[:, allowed].argmax(1)] == y).sum())
            count += len(y)
        for kind in kinds:
            rows[kind].append(100.0 * correct[kind] / count)
    module.train(was_training)
    return rows
