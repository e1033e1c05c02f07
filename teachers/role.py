"""A teacher role: a network in the position of giving guidance to the student."""
from __future__ import annotations

import torch
from torch import nn

from distill.contracts import ModelOutput
from students.taps import Tapped


class TeacherRole(nn.Module):
    """Base of every role. A frozen role keeps its network in eval mode whatever the trainer
    asks, never requires gradients and never enters the optimiser; a trainable role (co-trained)
    does. ``after_student_step`` lets a role follow the student (EMA)."""

    trainable: bool = False

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

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if self.trainable:
            return self.network(x)
        with torch.no_grad():
            return self.network(x)

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

    def after_student_step(self, student: Tapped) -> None:
        """Called after every optimiser step of the student."""
