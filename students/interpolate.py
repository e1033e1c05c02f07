"""Starting one network next to another's weights (Sarnthein et al. 2023, "Random Teachers are
Good Teachers")."""
from __future__ import annotations

import math

import torch

from distill.errors import ConfigError


def interpolate_init(student: torch.nn.Module, teacher: torch.nn.Module, alpha: float) -> None:
    """Sarnthein et al. 2023: theta_S = ((1 - a) theta_T + a theta_rand) / sqrt(a^2 + (1 - a)^2),
    theta_rand the student's own fresh initialisation, for every parameter; buffers (BatchNorm
    statistics) are copied from the teacher. Any pair of like modules (networks, heads)."""
    scale = math.sqrt(alpha ** 2 + (1 - alpha) ** 2)
    s_state, t_state = student.state_dict(), teacher.state_dict()
    if s_state.keys() != t_state.keys() or any(s_state[k].shape != t_state[k].shape for k in s_state):
        raise ConfigError("student.init", "init from: teacher needs the same network for student "
                                          "and teacher")
    params = dict(student.named_parameters())
    with torch.no_grad():
        for k, v in s_state.items():
            if k in params:
                v.copy_(((1 - alpha) * t_state[k] + alpha * v) / scale)
            else:
                v.copy_(t_state[k])
