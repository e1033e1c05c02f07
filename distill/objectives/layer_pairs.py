"""Objectives that compare tapped layers of the student and the teacher in pairs
(``pairs: [[s2, t2], [s3, t3]]``, names of ``student.net.taps`` and ``teacher.net.taps``): the
pairs' layers are what they read, checked when they bind, and always read from the teacher."""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from distill.contracts import FIELDS
from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.registry import nearest

Pairs = Annotated[list[tuple[str, str]], Field(min_length=1, max_length=64)]


def pooled_to(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two B x C x (L or H x W) maps with the larger one average-pooled to the smaller one's
    spatial size (mdistiller's attention transfer), each with its own channels."""
    if a.shape[2:] == b.shape[2:]:
        return a, b
    pool = F.adaptive_avg_pool1d if a.dim() == 3 else F.adaptive_avg_pool2d
    if a.shape[2:].numel() > b.shape[2:].numel():
        return pool(a, b.shape[2:]), b
    return a, pool(b, a.shape[2:])


class LayerPairObjective(Objective):
    """Base of the objectives over layer pairs of feature maps: B x C x H x W, or B x C x L
    (1-d convolutions; a B x N x D token layer would be misread, so tap convolutional layers)."""

    def __init__(self, pairs: Pairs):
        super().__init__()
        self.pairs = [tuple(p) for p in pairs]
        self.student_needs = frozenset(s for s, _ in self.pairs)
        self.teacher_needs = frozenset(t for _, t in self.pairs)

    @classmethod
    def reads_teacher(cls, params: dict) -> bool:
        return True

    def bind(self, ctx):
        if ctx.teacher_role is not None and not hasattr(ctx.teacher_role.network, "taps"):
            raise ConfigError(ctx.key, f"{self.registered_name} reads the teacher's layers, "
                                       f"which its network does not give (an ensemble's combined "
                                       f"output); {ctx.teacher_role.gives_note}")
        for i, (s_name, t_name) in enumerate(self.pairs):
            for who, name, out in (("student", s_name, ctx.student), ("teacher", t_name, ctx.teacher)):
                if out is None:
                    raise ConfigError(ctx.key, f"{self.registered_name} compares the student's "
                                               f"layers with the teacher's; add a `teacher:`")
                net = ctx.student_net if who == "student" else ctx.teacher_role.network
                if name in FIELDS or (name not in out.layers and name in net.taps):
                    why = ("names an output field, not a tapped layer" if name in FIELDS else
                           f"is tapped at {net.taps[name]!r}, but that module did not run in the "
                           f"forward pass")
                    raise ConfigError(f"{ctx.key}.pairs.{i}", f"the {who}'s {name!r} {why}; tap "
                                                              f"a convolutional layer by a name of "
                                                              f"your own under {who}.net.taps")
                if out.get(name) is None:
                    taps = sorted(out.layers)
                    have = (f"its named taps are {', '.join(taps)}{nearest(name, taps)}" if taps
                            else "it has no named taps")
                    raise ConfigError(f"{ctx.key}.pairs.{i}", f"the {who} has no layer {name!r}; "
                                                              f"{have}; tap it under "
                                                              f"{who}.net.taps (e.g. {name}: "
                                                              f"layer2)")
            s, t = ctx.student.get(s_name), ctx.teacher.get(t_name)
            for who, name, value in (("student", s_name, s), ("teacher", t_name, t)):
                if value.dim() not in (3, 4):
                    raise ConfigError(f"{ctx.key}.pairs.{i}",
                                      f"{self.registered_name} compares feature maps "
                                      f"(B x C x H x W or B x C x L), but the {who}'s {name!r} is "
                                      f"{' x '.join(map(str, value.shape))}; tap a convolutional "
                                      f"layer")
            if s.dim() != t.dim():
                raise ConfigError(f"{ctx.key}.pairs.{i}",
                                  f"the student's {s_name!r} ({' x '.join(map(str, s.shape))}) "
                                  f"and the teacher's {t_name!r} ({' x '.join(map(str, t.shape))}) "
                                  f"are maps of different ranks; pair layers of the same kind")
        super().bind(ctx)
