"""Distilling step-by-step (Hsieh et al. 2023): one sequence-to-sequence student, two tasks by
prefix, ``L = alpha * CE(predict: x -> y) + (1 - alpha) * CE(explain: x -> r)``, alpha = 0.5 as in
the authors' ``TaskPrefixTrainer``; CE is each sequence's token-mean cross-entropy (Hugging
Face's loss). ``r`` is the problem's first teacher rationale that passes self-consistency (or its
gold rationale with ``rationales: gold``); problems without one train on the label only."""
from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from distill.contracts.global_batch import global_mean
from distill.objectives.rationale_pool import RationaleObjective, rows_nll
from distill.registry import objectives


@objectives.register("dss")
class DistillingStepByStep(RationaleObjective):
    """Distilling step-by-step: alpha * label CE + (1 - alpha) * rationale CE (generation)."""

    def __init__(self, alpha: Annotated[float, Field(ge=0, le=1)] = 0.5,
                 rationales: Literal["teacher", "gold"] = "teacher",
                 samples: Annotated[int, Field(ge=1, le=64)] = 5, temperature: float = 0.7):
        super().__init__(rationales, samples, temperature)
        self.alpha = alpha

    def forward(self, step):
        scorer = step.extra["student_seq"]
        label = scorer.nll(step.inputs, step.labels).mean()
        first = self.pool.positives[step.index.cpu(), :1].to(step.inputs.device)
        nll = rows_nll(scorer, step.extra["explain"], first)[:, 0]
        rationale = global_mean(nll, torch.isfinite(nll), step.processes)
        return {"label": self.alpha * label, "rationale": (1 - self.alpha) * rationale}
