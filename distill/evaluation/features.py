"""Frozen representations to probe: the encoder features (the ``features`` field, penultimate,
before any classifier) of the student and of the teacher, and the raw input flattened.

Networks are read in eval mode without gradients and left exactly as they were (mode, device,
parameters, BatchNorm statistics), so probing never changes what it measures.
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils.data import DataLoader

from distill.errors import UserError
from students.taps import Tapped

SOURCES = ("student", "teacher", "raw")


@contextlib.contextmanager
def frozen_on(net: torch.nn.Module, device: torch.device):
    """``net`` in eval mode on ``device`` for the block; its mode and device restored after."""
    was_training = net.training
    home = next(net.parameters()).device
    net.eval().to(device)
    try:
        yield net
    finally:
        net.to(home).train(was_training)


@torch.no_grad()
def collect(loader: DataLoader, net: Tapped | None, device: torch.device
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features N x D, labels N) over ``loader``; ``net=None`` gives the flattened raw input."""
    xs, ys = [], []
    for batch in loader:
        x, y = batch[0].to(device), batch[1]
        if net is None:
            xs.append(x.flatten(1).float())
        else:
            out = net(x)
            if out.features is None:
                raise UserError("probing reads the encoder features, which this network does not "
                                "give; add a tap (net.taps: {features: ...})", key="evaluate")
            xs.append(out.features.float())
        ys.append(y)
    return torch.cat(xs), torch.cat(ys).to(device)


def pick_device(name: str, module: torch.nn.Module) -> torch.device:
    """``auto``: a GPU when there is one, else where the module is."""
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else \
            next(module.parameters()).device
    return torch.device(name)


def probe_sets(module, data, sources: list[str], device: torch.device
               ) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For each source present: (train features, train labels, test features, test labels).
    The teacher is skipped when the experiment has none."""
    nets = {"student": module.student, "raw": None,
            "teacher": module.teacher.network if module.teacher is not None else None}
    sets = {}
    for source in sources:
        if source == "teacher" and module.teacher is None:
            continue
        net = nets[source]
        with contextlib.nullcontext() if net is None else frozen_on(net, device):
            train = collect(data.train_eval_dataloader(), net, device)
            test = collect(data.test_dataloader(), net, device)
        sets[source] = (*train, *test)
    return sets
