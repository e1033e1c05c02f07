"""The objective contract: an ``nn.Module`` that is also a Lightning ``Callback``.

``forward(step)`` returns a loss tensor or a dict of named loss terms (each is logged; the engine
sums ``weight * term``). ``student_needs`` / ``teacher_needs`` name the ModelOutput fields it reads:
the teacher is not run at all when no objective needs it. ``bind`` runs once after the networks
exist, with one dry forward pass of each, to create size-dependent parameters (adapters,
projections) and to reject networks that cannot serve the objective. Its parameters are optimised
with the student; its buffers are saved in checkpoints; Lightning callback hooks give it a
lifecycle (class-means before fit, snapshots at task end, ...). Lightning holds each objective
through :class:`ObjectiveHooks`, which passes every hook on but keeps no state of its own: the
objective's tensors are module state, saved once with the model.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from distill.contracts import BindContext, ModelOutput, Step
from distill.errors import ConfigError


class Objective(nn.Module, Callback):
    student_needs: ClassVar[frozenset[str]] = frozenset({"logits"})
    teacher_needs: ClassVar[frozenset[str]] = frozenset()
    uses_labels: ClassVar[bool] = False
    uses_views: ClassVar[bool] = False  # reads step.student_views / step.teacher_views
    task_kinds: ClassVar[frozenset[str]] = frozenset({"classification"})  # the kinds it serves
    default_weight: ClassVar[float] = 1.0  # its authors' weight in the sum, when the file gives none
    default_warmup: ClassVar[int] = 0  # its authors' weight warm-up, when the file gives none
    warmup_first_epoch: ClassVar[int] = 0  # how its authors number the first epoch in the ramp
    # its loss relates a batch's samples to each other (pairs, graphs, negatives, banks): in a run
    # of several processes it reads the global batch (distill.contracts.global_batch)
    relates_samples: ClassVar[bool] = False

    def __init__(self):
        nn.Module.__init__(self)
        self._state_key = type(self).__name__

    @property
    def state_key(self) -> str:
        return self._state_key

    def bind(self, ctx: BindContext) -> None:
        """Check the networks' outputs and create size-dependent parameters."""
        if ctx.task_kind not in self.task_kinds:
            kinds = " and ".join(sorted(self.task_kinds))
            raise ConfigError(ctx.key, f"{self.registered_name} serves {kinds} tasks, but this "
                                       f"dataset is a {ctx.task_kind} set; pick an objective of "
                                       f"that kind (`distill list`)")
        if self.uses_views and not (ctx.data is not None and ctx.data.has_views):
            raise ConfigError(ctx.key, f"{self.registered_name} compares augmented views; add "
                                       f"`views: {{name: ..., count: 2}}` to `data:`")
        if self.uses_labels and ctx.experiment is not None and not ctx.experiment.data.labels:
            raise ConfigError(ctx.key, f"{self.registered_name} uses the labels, but "
                                       f"`data.labels: false` says training has none; remove this "
                                       f"objective or the setting")
        for who, out, needs in (("student", ctx.student, self.student_needs),
                                ("teacher", ctx.teacher, self.teacher_needs)):
            if needs and out is None:
                raise ConfigError(ctx.key, f"{self.registered_name} needs a teacher; add a "
                                           f"`teacher:` section or remove this objective")
            missing = sorted(set(needs) - (out.available() if out is not None else set()))
            if missing:
                note = (ctx.teacher_role.gives_note if who == "teacher" and ctx.teacher_role
                        else "add a tap (net.taps) or pick another network")
                raise ConfigError(ctx.key, f"{self.registered_name} needs the {who}'s "
                                           f"{', '.join(missing)}, which its network does not give;"
                                           f" {note}")

    @classmethod
    def reads_teacher(cls, params: dict) -> bool:
        """Whether this objective, with these options, uses the teacher (its outputs, or samples
        drawn from it); a run whose objectives do not need not wait for the teacher stage."""
        return bool(cls.teacher_needs)

    def forward(self, step: Step) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, student: ModelOutput) -> torch.Tensor | None:
        """Class scores (B x C) that replace the student's logits in evaluation, for objectives
        that classify otherwise (nearest prototype); None: the logits are the prediction."""
        return None

    def trained_apart(self) -> list[nn.Module]:
        """Submodules the objective trains with an optimiser of its own (a discriminator); the
        student's optimiser leaves them alone."""
        return []

    def summary(self) -> dict[str, float]:
        """Counts for the results table at the end of a stage (e.g. rationales kept)."""
        return {}

    def param_groups(self) -> list[dict]:
        """Optimiser parameter groups with their own options, e.g. ``{"params": [...], "lr":
        0.01}``; parameters in no group train with the experiment's optimiser options."""
        return []


class ObjectiveHooks(Callback):
    """The Lightning callback of one objective: every hook is the objective's own, but not its
    state. The objective is a submodule of the LightningModule, so its parameters and buffers are
    already in the checkpoint's ``state_dict``; as a callback of its own, Lightning would save
    them a second time under ``callbacks``."""

    def __init__(self, objective: Objective):
        self.objective = objective

    @property
    def state_key(self) -> str:
        return self.objective.state_key


def _passed_on(name: str):
    def hook(self, *args, **kwargs):
        return getattr(self.objective, name)(*args, **kwargs)
    hook.__name__ = name
    return hook


for _name, _member in vars(Callback).items():
    if callable(_member) and not _name.startswith("_") and _name not in ("state_dict",
                                                                          "load_state_dict"):
        setattr(ObjectiveHooks, _name, _passed_on(_name))
