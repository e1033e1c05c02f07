"""Class-means of a frozen teacher's penultimate features (Wang et al. 2023, "Improving Knowledge
Distillation via Regularizing Feature Norm and Direction"): ``c_k = mean_{i: y_i = k} f_t(x_i)``
over the training set, from one pass of the teacher in eval mode before training.

The means are a buffer (saved in checkpoints, so a resumed run reads the very values it started
with) and are cached in a file beside the teacher's weights, named by a fingerprint of that file,
the teacher's taps and the training set: every variant and seed with the same teacher reuses them.
Under DDP each rank passes over its share of the batches and the per-class sums and counts are
all-reduced. A class with no training sample keeps a zero mean.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from distill.atomic_write import atomic_save
from distill.contracts.global_batch import on_every_rank, rank_and_world


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def training_set_identity(experiment, data) -> dict:
    """What decides the training samples the means are taken over: the dataset and its
    parameters, and which of its samples are in the training set."""
    spec = experiment.data
    indices = data.train_set.indices
    return {"dataset": spec.name, "params": spec.params(), "imbalance": spec.imbalance,
            "size": len(data.train_set),
            "indices": None if indices is None else
            hashlib.sha256(indices.cpu().numpy().tobytes()).hexdigest()}


@torch.no_grad()
def class_feature_sums(teacher, loader, num_classes: int, device,
                       rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums (float64, C x D) and counts (C) of the teacher's features, in eval mode, over
    the batches ``rank, rank + world_size, ...`` of ``loader`` (items x, y, index)."""
    was_training = teacher.training
    teacher.eval()
    sums = counts = None
    for b, (x, y, _) in enumerate(loader):
        if b % world_size != rank:
            continue
        features = teacher(x.to(device)).features.double()
        y = y.to(device)
        if sums is None:
            sums = features.new_zeros(num_classes, features.shape[1])
            counts = features.new_zeros(num_classes)
        sums.index_add_(0, y, features)
        counts += torch.bincount(y, minlength=num_classes).to(counts)
    teacher.train(was_training)
    return sums, counts


class ClassMeans(nn.Module):
    """The buffer ``means`` (C x D): NaN until filled by :meth:`fill`."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.register_buffer("means", torch.full((num_classes, dim), float("nan")))

    @property
    def filled(self) -> bool:
        return not torch.isnan(self.means).any().item()

    def fill(self, teacher, data, device, cache_dir: str | Path | None, identity: dict,
             say=print) -> str:
        """Make ``means`` hold the teacher's class-means, unless it already does (restored from a
        checkpoint): read them from the cache file or compute them with one pass (and write the
        cache). Returns how they were obtained: restored, reused or computed."""
        if self.filled:
            say("class-means: restored from the checkpoint")
            return "restored"
        cache = None
        if cache_dir is not None:
            key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
            cache = Path(cache_dir) / f"class_means-{key.hexdigest()[:16]}.pt"
        if cache is not None and on_every_rank(cache.exists()):
            stored = torch.load(cache, map_location="cpu", weights_only=True)
            if stored.shape == self.means.shape:
                self.means.copy_(stored)
                say(f"class-means: reused {cache}")
                return "reused"
        self.means.copy_(self._compute(teacher, data, device))
        if cache is None:
            say("class-means: computed (no teacher weights file to cache them beside)")
        else:
            if rank_and_world()[0] == 0:
                atomic_save(self.means.cpu(), cache)
            say(f"class-means: computed from {len(data.train_set)} training samples -> {cache}")
        return "computed"

    def _compute(self, teacher, data, device) -> torch.Tensor:
        rank, world = rank_and_world()
        sums, counts = class_feature_sums(teacher, data.train_eval_dataloader(),
                                          self.means.shape[0], device, rank, world)
        if sums is None:  # this rank had no batch
            sums = torch.zeros(self.means.shape, dtype=torch.float64, device=device)
            counts = torch.zeros(self.means.shape[0], dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(sums)
            dist.all_reduce(counts)
        return (sums / counts.clamp(min=1).unsqueeze(1)).to(self.means)
