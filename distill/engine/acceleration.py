"""The experiment file's switches that change how a run computes, not what: ``channels_last``
(convolution weights and image batches in NHWC memory order, which oneDNN on CPUs and tensor cores
on GPUs run faster) and ``compile`` (``torch.compile`` of the student's network and of a frozen
teacher's, in place, so state dicts and checkpoints keep their names and a run may resume with
the switch flipped). Mixed precision is Lightning's: ``trainer: {precision: bf16-mixed}``."""
from __future__ import annotations

import torch

from students.taps import Tapped


def accelerate(module, data, channels_last: bool, compile: bool) -> None:
    """Apply the switches to a built module and its data module, before fit."""
    if channels_last:
        module.to(memory_format=torch.channels_last)
        data.channels_last = True
    if compile:
        networks = [module.student]
        if module.teacher is not None and module.teacher.static:
            networks += [m for m in module.teacher.modules() if isinstance(m, Tapped)]
        for tapped in networks:
            tapped.net.compile()
