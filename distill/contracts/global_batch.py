"""The global batch of a run in several processes, for objectives that relate a batch's samples to
each other (distances, angles and token graphs between samples, negatives, memory banks).

Under ``trainer: {strategy: ddp, devices: N}`` each process holds B samples of one global batch
of N * B (:class:`distill.data.base.EpochSampler`: process r has rows ``r, r + N, ...`` of the
single-process batch). :func:`global_step` gathers a step's tensors from every process and
interleaves them back into that single-process order, so such an objective computes exactly the
loss it would in one process with the global batch, and draws the same random negatives in every
process. Student outputs are gathered with their gradient (the backward pass sums every process's
gradient of its rows), so after DDP averages the N processes' gradients, each parameter's gradient
is the one of the single-process loss. BatchNorm relates a batch's samples too: an objective with
BatchNorm layers of its own (FitNets' regressor, ND's adapter) reads the global batch, so its
statistics are the single-process batch's (the student network's BatchNorm stays per process,
as in DDP without ``sync_batchnorm``, which torch serves on GPUs only).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from distill.contracts import ModelOutput, Step


class _GatherRows(torch.autograd.Function):
    """All-gather in the single-process order; backward: the sum over processes of the gradient
    of the whole, each process keeping its own rows."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.stack(parts, dim=1).flatten(0, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)  # autograd may share it
        dist.all_reduce(grad)
        world = dist.get_world_size()
        return grad.unflatten(0, (-1, world))[:, dist.get_rank()]


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every process's ``t`` (B x ...), as N * B rows in the single-process order: row
    ``i * N + r`` is row i of process r. Differentiable when ``t`` requires a gradient."""
    return _GatherRows.apply(t)


def uniform_rows(shape: tuple[int, ...], rank: int = 0, processes: int = 1,
                 device=None) -> torch.Tensor:
    """``torch.rand(shape)`` for the rows (``shape[0]``) of process ``rank``'s share of a global
    batch (a step's ``rank`` and ``processes``): every process draws the whole global batch's
    values from its generator (in the same state in every process) and keeps its own rows, so
    each sample gets the single-process run's draw."""
    if processes == 1:
        return torch.rand(shape, device=device)
    whole = torch.rand((shape[0] * processes, *shape[1:]), device=device)
    return whole[rank::processes]


def global_mean(values: torch.Tensor, keep: torch.Tensor, processes: int = 1) -> torch.Tensor:
    """The mean of ``values[keep]`` over the global batch, 0 when none is kept. In a process's
    share of it (a step's ``processes`` > 1): the share's sum over the global count, times the
    number of processes, so that both DDP's mean of the processes' gradients and the mean of the
    logged values are those of the single-process mean. Every process must call it at the same
    point (a collective)."""
    if processes == 1:
        return values[keep].mean() if keep.any() else values.new_zeros(())
    count = keep.sum().to(torch.float64)
    dist.all_reduce(count)
    if count.item() == 0:
        return values.new_zeros(())
    return values[keep].sum() * processes / count.to(values.dtype)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def on_every_rank(flag: bool) -> bool:
    """True when ``flag`` is true in every process, so that all of them take the same branch (a
    collective: every process calls it at the same point). The flag travels on the device the
    backend serves (NCCL: the GPU)."""
    if rank_and_world()[1] == 1:
        return flag
    agreed = torch.tensor(float(flag), device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
    return bool(agreed.item())


def reads_global_batch(objective: nn.Module) -> bool:
    """Whether an objective's loss relates a batch's samples: it says so, or it has BatchNorm."""
    return getattr(objective, "relates_samples", False) or any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in objective.modules())


def gather_output(out: ModelOutput | None) -> ModelOutput | None:
    """A ModelOutput with every field and tapped layer gathered."""
    if out is None:
        return None
    return ModelOutput.of({name: gather_rows(value) for name, value in out.values().items()})


def gather_views(views: list[ModelOutput] | None) -> list[ModelOutput] | None:
    return None if views is None else [gather_output(view) for view in views]


def global_step(step: Step, module) -> Step:
    """The step of the global batch: inputs, labels and sample indices gathered now; each
    output gathered when an objective first reads it (the local forward pass runs then, once,
    for both steps); ``extra`` made by the module's task kind (``global_extra``). Every process must
    read the same outputs in the same order, which the objectives' fixed order gives."""
    compute = {"student": lambda: gather_output(step.student),
               "teacher": lambda: gather_output(step.teacher),
               "student_views": lambda: gather_views(step.student_views),
               "teacher_views": lambda: gather_views(step.teacher_views)}
    whole = Step(inputs=gather_rows(step.inputs), labels=gather_rows(step.labels),
                 index=gather_rows(step.index), epoch=step.epoch, max_epochs=step.max_epochs,
                 global_step=step.global_step, task=step.task, compute=compute)
    # (processes stays 1: this batch is already the whole one, as in a single process)
    whole.extra = module.kind.global_extra(module, step, whole)
    return whole
