"""An ensemble of frozen teachers (multi-teacher distillation): several trained networks whose
class scores are combined into the one teacher output every logit-reading objective uses.

``combine: logits`` gives ``z = sum_k w_k z_k``; ``combine: probabilities`` gives
``z = log sum_k w_k softmax(z_k)``, so that ``softmax(z)`` is the weighted mean of the members'
predictions (Hinton et al. 2015 distil an ensemble through its arithmetic mean; the mean of logits
is the normalised geometric mean of the predictions). The weights ``w_k`` are the members'
``weight`` normalised to sum 1. An objective with a temperature softens the combined scores:
``softmax(z / T)``."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from distill.contracts import ModelOutput
from distill.errors import ConfigError
from distill.registry import teachers
from students.taps import Tapped
from teachers.role import TeacherRole


def combine_logits(logits: list[torch.Tensor], weights: torch.Tensor,
                   combine: str = "logits") -> torch.Tensor:
    """The members' B x C scores combined with weights summing to 1: their weighted mean
    (``logits``), or the log of their predictions' weighted mean (``probabilities``)."""
    stacked = torch.stack(logits)  # K x B x C
    w = weights.to(stacked).view(-1, 1, 1)
    if combine == "logits":
        return (w * stacked).sum(dim=0)
    return torch.logsumexp(stacked.log_softmax(dim=-1) + w.log(), dim=0)


class Ensemble(nn.Module):
    """Frozen member networks and their weights (normalised); its output carries the combined
    logits only, as the members' features need not share a size. ``combine`` is the role's
    option."""

    combine = "logits"

    def __init__(self, members: list[Tapped], weights: list[float]):
        super().__init__()
        self.members = nn.ModuleList(members)
        total = float(sum(weights))
        self.register_buffer("weights", torch.tensor([w / total for w in weights]),
                             persistent=False)

    def forward(self, *inputs: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=combine_logits([m(*inputs).logits for m in self.members],
                                                 self.weights, self.combine))


@teachers.register("ensemble")
class EnsembleTeacher(TeacherRole):
    """Frozen members (``members:``, each from a checkpoint or its own teacher stage), their logits
    combined; its accuracy is a row of the table beside the student's."""

    weights = "members"
    reported = True
    gives_note = ("an ensemble teacher gives its members' combined logits only; pick an objective "
                  "that reads the teacher's logits, or one teacher")

    @classmethod
    def check(cls, spec, continual: bool) -> None:
        super().check(spec, continual)
        if continual:
            raise ConfigError("teacher.role", "an ensemble teacher serves one task; task "
                                              "sequences take a single teacher")
        if not spec.members:
            raise ConfigError("teacher.members", "an ensemble teacher needs `members:`, a list of "
                                                 "networks each with `checkpoint:` or a seed of "
                                                 "the teacher's `train:` recipe")
        for key in ("checkpoint", "seed"):
            if key in spec.model_fields_set:
                raise ConfigError(f"teacher.{key}", f"an ensemble teacher takes `{key}:` per "
                                                    f"member; move it under `members:`")
        seen = {}
        for i, member in enumerate(spec.members):
            if member.checkpoint and member.train:
                raise ConfigError(f"teacher.members.{i}.train", "a member takes `checkpoint:` or "
                                                                "`train:`, not both; remove one")
            if not (member.checkpoint or member.train or spec.train):
                raise ConfigError(f"teacher.members.{i}", "a member needs `checkpoint:` (a "
                                                          "weights file) or `train:` (here or in "
                                                          "the teacher section)")
            same = seen.setdefault(spec.member(member).model_dump_json(), i)
            if same != i:
                raise ConfigError(f"teacher.members.{i}", f"is member {same} again (the same "
                                                          f"network, recipe and seed); give it "
                                                          f"another seed or remove it")

    def __init__(self, network: Ensemble, combine: Literal["logits", "probabilities"] = "logits"):
        super().__init__(network)
        network.combine = combine
