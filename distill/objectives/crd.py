"""Contrastive representation distillation (Tian et al. 2020, "Contrastive Representation
Distillation"), as in the authors' RepDistiller and mdistiller.

The penultimate features of student and teacher are embedded (``Linear -> L2 norm``, dimension
128, both trained with the student) into ``v_s`` and ``v_t``. Two memory banks over the training
set, ``M_s`` and ``M_t`` (N x 128, initialised uniform in +-1/sqrt(128/3)), hold a momentum
average of each sample's embeddings. For sample i with K negatives j drawn from the training
samples of other classes ("exact" mode: the positive is i itself),

``h_t(i, j) = exp(<M_s[j], v_t(i)> / tau) / Z_t`` and ``h_s(i, j) = exp(<M_t[j], v_s(i)> / tau) / Z_s``,

Z fixed at the first step to ``N * mean(exp(...))``, and the NCE loss of each,
``-(1/B) sum_i [log(h_i0 / (h_i0 + K/N)) + sum_j log((K/N) / (h_ij + K/N))]``, summed over both
sides; then ``M[i] <- normalize(m M[i] + (1 - m) v(i))``. Defaults: K = 16384 (drawn without
replacement, or with it for a sample whose other classes have fewer, as the authors do; on the
training device, where the authors draw in their data-loader workers), tau = 0.07, m = 0.5,
weight 0.8 (mdistiller's). Banks and Z are buffers: saved in checkpoints, so resume is exact."""
from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.registry import objectives

EPS = 1e-7  # the authors' ContrastLoss epsilon


def nce_loss(scores: torch.Tensor, num_data: int) -> torch.Tensor:
    """The authors' ContrastLoss on B x (1 + K) normalised scores, the positive in column 0:
    noise probability 1/N per sample, K noise samples per positive."""
    k = scores.shape[1] - 1
    noise = k / num_data
    positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + EPS))
    negative = torch.log(noise / (scores[:, 1:] + noise + EPS))
    return -(positive.sum() + negative.sum()) / len(scores)


class ContrastMemory(nn.Module):
    """Two momentum memory banks, a row per sample of the underlying set (``size``), and the
    normalisation constants, estimated over the ``num_data`` training samples."""

    def __init__(self, dim: int, size: int, num_data: int, temperature: float, momentum: float):
        super().__init__()
        self.temperature, self.momentum = temperature, momentum
        self.num_data = num_data  # the training samples Z sums over
        bound = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("student_bank", torch.rand(size, dim) * 2 * bound - bound)
        self.register_buffer("teacher_bank", torch.rand(size, dim) * 2 * bound - bound)
        self.register_buffer("z", torch.full((2,), -1.0))  # Z_s, Z_t; < 0: not set yet

    def scores(self, v_s: torch.Tensor, v_t: torch.Tensor,
               contrast: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_s, h_t), each B x (1 + K): the student's embedding against the teacher bank's rows
        ``contrast``, and the teacher's against the student bank's."""
        out = []
        for side, (bank, v) in enumerate(((self.teacher_bank, v_s), (self.student_bank, v_t))):
            rows = bank[contrast].detach()  # B x (1 + K) x D
            h = torch.exp(torch.bmm(rows, v[:, :, None]).squeeze(2) / self.temperature)
            if self.z[side] < 0:
                self.z[side] = h.mean().detach() * self.num_data
            out.append(h / self.z[side].clone())  # a constant: z is written in place above
        return out[0], out[1]

    @torch.no_grad()
    def update(self, v_s: torch.Tensor, v_t: torch.Tensor, index: torch.Tensor) -> None:
        """M[i] <- normalize(m M[i] + (1 - m) v(i)) in both banks."""
        for bank, v in ((self.student_bank, v_s), (self.teacher_bank, v_t)):
            moved = bank[index] * self.momentum + v.detach() * (1 - self.momentum)
            bank[index] = F.normalize(moved, dim=1)


class OtherClassSampler:
    """K training samples of classes other than each row's label, uniformly (the authors'
    ``cls_negative``): without replacement when there are at least K, else with."""

    def __init__(self, members: torch.Tensor, labels: torch.Tensor, k: int):
        order = torch.argsort(labels, stable=True)
        self.members = members[order]
        counts = torch.bincount(labels)
        self.start = torch.cumsum(counts, 0) - counts  # each class's first row in ``members``
        self.count = counts
        self.k = k

    def to(self, device) -> "OtherClassSampler":
        self.members, self.start, self.count = (t.to(device) for t in (self.members, self.start,
                                                                        self.count))
        return self

    def __call__(self, labels: torch.Tensor) -> torch.Tensor:
        """B x K sample indices, drawn on the labels' device."""
        device = labels.device
        others = len(self.members) - self.count[labels]  # B
        r = (torch.rand(len(labels), self.k, device=device) * others[:, None]).long()
        distinct = others >= self.k  # these rows draw without replacement, as the authors do
        if distinct.any():  # the first K of a random ordering of each such row's others
            rows = others[distinct]
            keys = torch.rand(len(rows), int(rows.max()), device=device)
            keys = keys.masked_fill(torch.arange(keys.shape[1], device=device) >= rows[:, None],
                                    2.0)
            r[distinct] = keys.topk(self.k, dim=1, largest=False).indices
        start = self.start[labels][:, None]
        r = r + (r >= start) * self.count[labels][:, None]  # skip over the row's own class
        return self.members[r]


@objectives.register("crd")
class CRD(Objective):
    """CRD: NCE against K = 16384 negatives of other classes from momentum memory banks of the
    embedded penultimate features (dimension 128, tau 0.07, momentum 0.5, weight 0.8)."""

    student_needs = frozenset({"features"})
    relates_samples = True
    teacher_needs = frozenset({"features"})
    uses_labels = True  # its negatives are samples of the other classes
    default_weight = 0.8

    def __init__(self, negatives: Annotated[int, Field(ge=1, le=1_000_000)] = 16384,
                 dim: Annotated[int, Field(ge=1, le=65536)] = 128,
                 temperature: Annotated[float, Field(gt=0, le=100)] = 0.07,
                 momentum: Annotated[float, Field(ge=0, le=1)] = 0.5):
        super().__init__()
        self.k, self.dim, self.temperature, self.momentum = negatives, dim, temperature, momentum

    def bind(self, ctx):
        super().bind(ctx)
        data = ctx.data
        members = data.train_set.indices
        if members is None:
            members = torch.arange(len(data.splits.train))
        labels = data.train_targets().long()
        if len(torch.unique(labels)) < 2:
            raise ConfigError(ctx.key, "crd draws its negatives from the other classes, but the "
                                       "training set has one class; use another objective")
        self.sampler = OtherClassSampler(members, labels, self.k)
        self.num_data = len(members)
        self.embed_student = nn.Linear(ctx.student.features.flatten(1).shape[1], self.dim)
        self.embed_teacher = nn.Linear(ctx.teacher.features.flatten(1).shape[1], self.dim)
        self.memory = ContrastMemory(self.dim, len(data.splits.train), self.num_data,
                                     self.temperature, self.momentum)

    def forward(self, step):
        v_s = F.normalize(self.embed_student(step.student.features.flatten(1)), dim=1)
        v_t = F.normalize(self.embed_teacher(step.teacher.features.detach().flatten(1)), dim=1)
        index = step.index.to(v_s.device)
        if self.sampler.members.device != v_s.device:
            self.sampler.to(v_s.device)
        contrast = torch.cat([index[:, None], self.sampler(step.labels.to(v_s.device))], dim=1)
        h_s, h_t = self.memory.scores(v_s, v_t, contrast)
        loss = nce_loss(h_s, self.num_data) + nce_loss(h_t, self.num_data)
        self.memory.update(v_s, v_t, index)
        return loss
