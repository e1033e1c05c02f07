"""The momentum teacher of self-distillation (BYOL; DINO, Caron et al. 2021): an exponential moving
average of the student.

It starts as an exact copy of the student (when the student is built, before any training) and,
after every optimiser step of the student, moves each parameter toward the student's:
``theta_t <- m theta_t + (1 - m) theta_s``. BatchNorm running statistics follow the same average
(the teacher runs in eval mode on them); integer buffers are copied. ``schedule: cosine`` raises the
momentum from ``momentum`` to 1 over the fit, DINO's
``m_k = 1 - (1 - m_0) (cos(pi k / K) + 1) / 2`` for step k of K.
"""
import math
from typing import Literal  # evaluated annotations: the registry makes them the schema

import torch
from torch import nn

from distill.errors import ConfigError
from distill.registry import teachers
from students.taps import Tapped
from teachers.role import TeacherRole


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """theta_t <- m theta_t + (1 - m) theta_s for parameters and floating buffers; other buffers
    (BatchNorm's step counter) are copied."""
    s_state = student.state_dict()
    for name, value in teacher.state_dict().items():
        if value.is_floating_point():
            value.mul_(momentum).add_(s_state[name], alpha=1 - momentum)
        else:
            value.copy_(s_state[name])


@teachers.register("ema")
class EMATeacher(TeacherRole):
    """Momentum copy of the student: theta_t <- m theta_t + (1 - m) theta_s after every step."""

    def __init__(self, network: Tapped, momentum: float = 0.996,
                 schedule: Literal["constant", "cosine"] = "constant"):
        super().__init__(network)
        if not 0 <= momentum <= 1:
            raise ConfigError("teacher.momentum", f"momentum is a weight in [0, 1], got {momentum}")
        self.momentum, self.schedule = momentum, schedule
        self.pairs: list[tuple[nn.Module, nn.Module]] = []  # (teacher part, student part)
        self.total_steps = 1
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @property
    def static(self) -> bool:
        return False

    def track(self, teacher_part: nn.Module, student_part: nn.Module) -> None:
        t_state, s_state = teacher_part.state_dict(), student_part.state_dict()
        if t_state.keys() != s_state.keys() or any(t_state[k].shape != s_state[k].shape
                                                   for k in t_state):
            raise ConfigError("teacher.net", "an ema teacher is a momentum copy of the student: "
                                             "give it the student's network (leave teacher.net "
                                             "out)")
        teacher_part.load_state_dict(s_state)
        self.pairs.append((teacher_part, student_part))

    def plan_steps(self, total_steps: int) -> None:
        self.total_steps = max(1, int(total_steps))

    def momentum_at(self, k: int) -> float:
        if self.schedule == "constant":
            return self.momentum
        progress = min(k, self.total_steps) / self.total_steps
        return 1 - (1 - self.momentum) * (math.cos(math.pi * progress) + 1) / 2

    def after_student_step(self, student: Tapped) -> None:
        m = self.momentum_at(int(self.updates))
        for teacher_part, student_part in self.pairs:
            ema_update(teacher_part, student_part, m)
        self.updates += 1
