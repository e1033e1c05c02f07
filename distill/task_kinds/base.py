"""The task-kind contract (see the package docstring)."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from distill.contracts import ModelOutput, Step


class TaskKind:
    """What a kind of task decides. ``name`` is what objectives list in ``task_kinds``;
    ``headline`` the validation metric kept per epoch (``history``), logged as ``val/<headline>``.
    """

    name: ClassVar[str]
    headline: ClassVar[str]
    caches_teacher: ClassVar[bool] = True  # a frozen teacher's outputs may be cached per sample
    has_classes: ClassVar[bool] = True  # targets are classes (imbalance profiles, views apply)
    # several processes: each validates every world-th test sample (its metrics add their counts
    # up); when False each validates the whole test set (measures over the whole gallery)
    shards_validation: ClassVar[bool] = True

    def metrics(self, num_classes: int) -> dict[str, nn.Module]:
        """The validation metric modules (torchmetrics), kept on the LightningModule."""
        raise NotImplementedError

    def check_network(self, net: nn.Module, name: str, key: str) -> None:
        """Refuse a network (registered as ``name``) that cannot serve this kind (ConfigError at
        ``key``)."""

    def probe(self, net: nn.Module, data) -> ModelOutput:
        """One forward pass of ``net`` on two training items, in eval mode without gradients,
        leaving its state as it was (what objectives bind to)."""
        raise NotImplementedError

    def step(self, module, batch) -> Step:
        """The step record of a training batch; forward passes run when an objective reads them."""
        raise NotImplementedError

    def global_extra(self, module, step: Step, whole: Step) -> dict[str, Any]:
        """``extra`` of the global batch's step ``whole`` (several processes, see
        :mod:`distill.contracts.global_batch`), from the local ``step``'s."""
        return step.extra

    def validation_step(self, module, batch) -> None:
        raise NotImplementedError

    def validation_end(self, module) -> dict[str, float]:
        """The epoch's validation values (logged as ``val/<name>``), metrics reset."""
        raise NotImplementedError

    def results(self, module, data, history: list[float]) -> dict[str, Any]:
        """The stage's metrics for ``metrics.json`` and the results table."""
        raise NotImplementedError


def two_input_step(module, inputs: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                   *net_inputs: torch.Tensor) -> Step:
    """The step of a kind whose networks read several inputs (image and caption, source and
    target): student and teacher outputs ``net(*net_inputs)``, each computed when first read."""
    teacher = module.teacher if module.teacher_fields else None
    compute = {"student": lambda: module.student(*net_inputs),
               "teacher": lambda: teacher(*net_inputs) if teacher is not None else None}
    return Step(inputs=inputs, labels=labels, index=index, epoch=module.current_epoch,
                max_epochs=module.epochs, global_step=module.global_step, task=module.task,
                compute=compute)


def eval_forward(net: nn.Module, *inputs: torch.Tensor):
    """``net(*inputs)`` in eval mode without gradients, leaving the network's mode as it was."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        out = net(*inputs)
    net.train(was_training)
    return out
