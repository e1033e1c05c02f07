"""The experiment file's switches that change how a run computes, not what: ``channels_last``
(convolution weights and image batches in NHWC memory order, which oneDNN on CPUs and tensor cores
on GPUs run faster) and ``compile`` (``torch.compile`` of the student's network and of a frozen
teacher's, in place, so state dicts and checkpoints keep their names). Both are part of a run's
configuration: their numbers differ from the default's in the last digits. Mixed precision is
Lightning's: ``trainer: {precision: bf16-mixed}``."""
from __future__ import annotations

import os
import shutil

import torch

from distill.errors import ConfigError
from students.taps import Tapped


def check_compiler(compile: bool) -> None:
    """``compile`` needs a C++ compiler on the machine (inductor builds its kernels with it):
    refused at validate instead of a traceback at the first step."""
    if compile and not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++",
                                                     "clang++")):
        raise ConfigError("compile", "torch.compile needs a C++ compiler (g++ or clang++, or "
                                     "$CXX) on this machine and none was found; install one or "
                                     "remove compile: true")


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
