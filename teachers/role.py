"""A teacher role: a network in the position of giving guidance to the student."""
from __future__ import annotations

import torch
from torch import nn

from students.output import ModelOutput
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

    def after_student_step(self, student: Tapped) -> None:
        """Called after every optimiser step of the student."""
