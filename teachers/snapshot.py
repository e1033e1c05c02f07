"""The snapshot teacher of continual learning: the student as it was at the end of the previous
task, frozen (LwF, Li & Hoiem 2016; PRD, Asadi et al. 2023). Before the first task there is none:
the objectives that read it contribute nothing during task 0.

BatchNorm. ``batch_stats: true`` (default) is the PRD authors' behaviour: their old model is a copy
of the model taken while it is in train mode and never put in eval mode, so during training its
BatchNorm layers normalise with the statistics of the batch, as the student's do; right after the
snapshot (identical weights, same batch) the teacher's outputs equal the student's and PRD's
relation term is exactly 0. Here the snapshot's stored running statistics do not move (each
BatchNorm layer runs with ``track_running_stats`` off for that forward pass, then is restored):
the buffers stay those of the student at the task's end, nothing changes in checkpoints, and
evaluation passes (module in eval mode) use the running statistics as for any network. Other layers
that differ between modes (dropout) stay in eval mode. ``batch_stats: false`` runs the whole
snapshot in eval mode (running statistics), as a frozen teacher; then the outputs depend on the
input alone and can be cached.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from distill.errors import ConfigError
from distill.registry import teachers
from teachers.role import TeacherRole


@contextmanager
def batch_statistics(network: nn.Module):
    """Within the block, every BatchNorm layer of ``network`` normalises with the batch's
    statistics and leaves its running statistics (and step counter) untouched; afterwards each
    layer's mode and ``track_running_stats`` are what they were."""
    layers = [m for m in network.modules() if isinstance(m, _BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in layers]
    try:
        for m in layers:
            m.training, m.track_running_stats = True, False
        yield
    finally:
        for m, (training, track) in zip(layers, saved):
            m.training, m.track_running_stats = training, track


@teachers.register("snapshot")
class SnapshotTeacher(TeacherRole):
    """The student frozen at the previous task's end, with any objective state paired to it.

    ``batch_stats``: true (default, the PRD authors' code): in training passes its BatchNorm layers
    use the batch's statistics, as the student's do, without changing its stored running
    statistics; false: eval mode throughout (running statistics)."""

    remembers_tasks = True

    def __init__(self, network: nn.Module, batch_stats: bool = True):
        super().__init__(network)
        self.batch_stats = batch_stats
        self.pairs: list[tuple[nn.Module, nn.Module]] = []  # (frozen copy, live part)

    @property
    def static(self) -> bool:
        """With batch statistics the outputs depend on the whole batch: nothing can be cached."""
        return not self.batch_stats

    def forward(self, x: torch.Tensor):
        if self.batch_stats and self.training:
            with torch.no_grad(), batch_statistics(self.network):
                return self.network(x)
        return super().forward(x)

    def track(self, teacher_part: nn.Module, student_part: nn.Module) -> None:
        """Pair a frozen copy with the live part it snapshots: the network with the student, and
        objective state such as PRD's prototypes."""
        t_state, s_state = teacher_part.state_dict(), student_part.state_dict()
        if t_state.keys() != s_state.keys() or any(t_state[k].shape != s_state[k].shape
                                                   for k in t_state):
            raise ConfigError("teacher.net", "a snapshot teacher is the student itself at the end "
                                             "of the previous task: leave teacher.net out")
        self.pairs.append((teacher_part, student_part))

    @torch.no_grad()
    def take(self) -> None:
        """Copy every live part into its frozen copy (called when a task after the first starts)."""
        for teacher_part, student_part in self.pairs:
            teacher_part.load_state_dict(student_part.state_dict())

    def on_task_start(self, task: int) -> None:
        """Take the snapshot when a task after the first starts."""
        if task > 0:
            self.take()


def require_snapshot(ctx, name: str) -> None:
    """Refuse an objective that learns from earlier tasks (``ctx``: its BindContext) outside a
    continual run or without the snapshot teacher."""
    if ctx.tasks is None:
        raise ConfigError(ctx.key, f"{name} learns a sequence of tasks; add a `continual:` section")
    if ctx.teacher_role is None or not ctx.teacher_role.remembers_tasks:
        raise ConfigError(ctx.key, f"{name} distils from the model of the previous task; add "
                                   f"`teacher: {{role: snapshot}}`")
