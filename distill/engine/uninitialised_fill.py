"""Deterministic mode without torch's NaN fill of new tensors, for the length of a fit.

With deterministic algorithms on (a stage's default, for exact resume) torch fills every new
tensor with NaN (``torch.utils.deterministic.fill_uninitialized_memory``), its check that no
operation reads memory it has not written. No operation of the workbench does (with the fill,
such a read would have turned a run's numbers into NaN), and the fill took 10% of a CIFAR KD
step's time on a CPU (``aten::fill_``, torch.profiler). The process's setting is put back when
the fit ends or fails, so a library user keeps torch's check outside the workbench's fits."""
from __future__ import annotations

import torch.utils.deterministic as deterministic
from lightning.pytorch.callbacks import Callback


class WithoutUninitialisedFill(Callback):
    def __init__(self):
        self.before: bool | None = None

    def on_fit_start(self, trainer, pl_module):
        self.before = deterministic.fill_uninitialized_memory
        deterministic.fill_uninitialized_memory = False

    def on_fit_end(self, trainer, pl_module):
        self._put_back()

    def on_exception(self, trainer, pl_module, exception):
        self._put_back()

    def _put_back(self):
        if self.before is not None:
            deterministic.fill_uninitialized_memory = self.before
            self.before = None
