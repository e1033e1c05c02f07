"""The settings of the whole process a stage changes, put back when the stage returns or fails.

A stage sets torch's thread count (``threads``); Lightning's Trainer turns deterministic
algorithms on (``trainer: {deterministic: true}``, the default, for exact resume), sets cuDNN's
benchmark flag and cuBLAS's workspace variable, and leaves them set after its fit. A stage also
turns off torch's NaN fill of every new tensor
(``torch.utils.deterministic.fill_uninitialized_memory``), deterministic mode's check that no
operation reads memory it has not written: no operation of the workbench does (with the fill,
such a read would turn a run's numbers into NaN), and the fill took 10% of a CIFAR KD step on a
CPU (``aten::fill_``, torch.profiler). A library user (a notebook, a script) gets these five
back as they were before the stage. Not put back: glibc's allocator setting
(:mod:`distill.engine.allocator`, which has no reader), the random generators' state and the
environment variables Lightning sets for seeds and several processes."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.utils.deterministic as torch_deterministic

CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"


@dataclass(frozen=True)
class ProcessSettings:
    """torch's thread count, deterministic mode (and its warn-only flag), the NaN fill of new
    tensors, cuDNN's benchmark flag and cuBLAS's workspace variable (None: unset)."""

    threads: int
    deterministic: bool
    warn_only: bool
    fill: bool
    cudnn_benchmark: bool
    cublas_workspace: str | None

    @classmethod
    def now(cls) -> "ProcessSettings":
        """The process's settings as they are."""
        return cls(torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                   torch.is_deterministic_algorithms_warn_only_enabled(),
                   torch_deterministic.fill_uninitialized_memory, torch.backends.cudnn.benchmark,
                   os.environ.get(CUBLAS_WORKSPACE))

    def put_back(self) -> None:
        """Sets the process to these settings."""
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.deterministic, warn_only=self.warn_only)
        torch_deterministic.fill_uninitialized_memory = self.fill
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        if self.cublas_workspace is None:
            os.environ.pop(CUBLAS_WORKSPACE, None)
        else:
            os.environ[CUBLAS_WORKSPACE] = self.cublas_workspace


def keeps_process_settings(stage):
    """``stage`` runs without the NaN fill; the process's settings are put back after it."""
    @functools.wraps(stage)
    def run(*args, **kwargs):
        before = ProcessSettings.now()
        torch_deterministic.fill_uninitialized_memory = False
        try:
            return stage(*args, **kwargs)
        finally:
            before.put_back()
    return run
