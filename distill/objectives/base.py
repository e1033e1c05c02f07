"""The objective contract: an ``nn.Module`` with Lightning's callback hooks.

``forward(step)`` returns a loss tensor or a dict of named loss terms (each is logged; the engine
sums ``weight * term``). ``student_needs`` / ``teacher_needs`` name the ModelOutput fields it reads:
the teacher is not run at all when no objective needs it. ``bind`` runs once after the networks
exist, with one dry forward pass of each, to create size-dependent parameters (adapters,
projections) and to reject networks that cannot serve the objective. Its parameters are optimised
with the student; its buffers are saved in checkpoints. It has every hook of a Lightning
``Callback`` (``on_fit_start(trainer, pl_module)``, ...), doing nothing until it defines its own,
for its lifecycle (class-means before fit, snapshots at task end, ...): Lightning holds each
objective through :class:`~distill.engine.objective_hooks.ObjectiveHooks`, which passes every hook
on but keeps no state of its own (the objective's tensors are module state, saved once with the
model). The hooks are Lightning's without its class, so ``distill validate`` and ``distill list``
build objectives without importing Lightning (5 s).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from distill.contracts import BindContext, ModelOutput, Step
from distill.errors import ConfigError


class Objective(nn.Module):
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


# the hooks of Lightning's ``Callback`` (its state_dict and load_state_dict are nn.Module's here);
# a test keeps the list equal to Lightning's
CALLBACK_HOOKS = (
    "setup", "teardown", "on_fit_start", "on_fit_end", "on_sanity_check_start",
    "on_sanity_check_end", "on_train_batch_start", "on_train_batch_end", "on_train_epoch_start",
    "on_train_epoch_end", "on_validation_epoch_start", "on_validation_epoch_end",
    "on_test_epoch_start", "on_test_epoch_end", "on_predict_epoch_start", "on_predict_epoch_end",
    "on_validation_batch_start", "on_validation_batch_end", "on_test_batch_start",
    "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end", "on_train_start",
    "on_train_end", "on_validation_start", "on_validation_end", "on_test_start", "on_test_end",
    "on_predict_start", "on_predict_end", "on_exception", "on_save_checkpoint",
    "on_load_checkpoint", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_before_zero_grad")


def _nothing(self, *args, **kwargs) -> None:
    """A Lightning callback hook the objective has no use for."""


for _hook in CALLBACK_HOOKS:
    setattr(Objective, _hook, _nothing)
