"""A teacher role: a network in the position of giving guidance to the student."""
from __future__ import annotations

import torch
from torch import nn

from distill.contracts import ModelOutput
from distill.errors import ConfigError
from students.taps import Tapped


class TeacherRole(nn.Module):
    """Base of every role. A frozen role keeps its network in eval mode whatever the trainer
    asks, never requires gradients and never enters the optimiser; a trainable role (co-trained)
    does. A role is told apart by its hooks, never by its name: ``check`` (what the experiment
    file must give it), ``track`` (pairing with the student), ``plan_steps``, ``on_task_start``
    and ``after_student_step``.

    ``weights``: where the role's network gets its weights. "given": from ``checkpoint:`` or the
    experiment's teacher stage (``train:``), one of them required; "own": the role makes them
    itself (random initialisation, a copy of the student), and neither may be given; "members":
    the role combines several frozen networks (``members:``), each given its weights that way.
    ``remembers_tasks``: the role holds the model of the previous task (continual objectives
    that distil from it need such a role). A trainable role is optimised with the student, gives
    its own loss (``loss``). A ``reported`` role is evaluated beside the student, its accuracy a
    row of its own (a co-trained teacher, an ensemble); ``gives_note`` tells a file whose
    objective reads an output the role's network does not give what to do."""

    trainable: bool = False
    reported: bool = False
    weights: str = "own"
    remembers_tasks: bool = False
    needs: frozenset[str] = frozenset()  # outputs the role reads itself at every step (its loss)
    gives_note: str = "add a tap (net.taps) or pick another network"

    @classmethod
    def check(cls, spec, continual: bool) -> None:
        """Refuse a teacher section this role cannot serve (ConfigError), before anything is
        built; ``spec`` is the file's ``teacher:`` section, ``continual`` whether the experiment
        is a task sequence."""
        name = cls.registered_name
        if spec.members is not None and cls.weights != "members":
            raise ConfigError("teacher.members", f"a {name} teacher is one network; members are "
                                                 f"for role: ensemble")
        if cls.weights == "given" and spec.checkpoint and spec.train:
            raise ConfigError("teacher.train", f"a {name} teacher takes `checkpoint:` or `train:`, "
                                               f"not both; remove one")
        if cls.weights == "given" and not (spec.checkpoint or spec.train):
            raise ConfigError("teacher", f"a {name} teacher needs `checkpoint:` (a weights file) "
                                         f"or `train:` (the teacher stage's recipe)")
        if cls.weights == "own":
            for key in ("checkpoint", "train"):
                if getattr(spec, key) is not None:
                    raise ConfigError(f"teacher.{key}", f"a {name} teacher makes its own weights; "
                                                        f"remove `{key}:` or use role: frozen")
        if cls.remembers_tasks and not continual:
            raise ConfigError("teacher.role", f"a {name} teacher is the student at the end of the "
                                              f"previous task; it needs a `continual:` section")

    def __init__(self, network: Tapped):
        super().__init__()
        self.network = network
        if not self.trainable:
            self.network.requires_grad_(False)
            self.network.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.trainable:
            self.network.eval()
        return self

    def forward(self, *inputs: torch.Tensor) -> ModelOutput:
        if self.trainable:
            return self.network(*inputs)
        with torch.no_grad():
            return self.network(*inputs)

    @property
    def static(self) -> bool:
        """True when the outputs depend on the input alone during a fit (so they can be cached)."""
        return not self.trainable

    def track(self, teacher_part: nn.Module, student_part: nn.Module) -> None:
        """Pair a teacher module with its student counterpart: the network with the student (done
        when the student is built) and any module an objective puts on both (DINO's head). A role
        that follows the student (EMA) copies the student part here and follows it; others keep
        the teacher part as it is."""

    def plan_steps(self, total_steps: int) -> None:
        """Called when a fit starts, with the number of optimiser steps it takes (for schedules)."""

    def on_task_start(self, task: int) -> None:
        """Called when task ``task`` of a task sequence starts, after the state at the end of the
        previous task is loaded."""

    def after_student_step(self, student: Tapped) -> None:
        """Called after every optimiser step of the student."""

    def loss(self, step) -> dict[str, torch.Tensor]:
        """A trainable role's own loss terms at a step (added to the sum, logged as
        ``train/teacher/<name>``); a frozen role has none."""
        return {}
