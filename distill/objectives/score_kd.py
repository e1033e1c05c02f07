"""Plain score distillation for retrieval: the student's scores of each query image's candidate
captions (its own and ``candidates - 1`` random irrelevant ones of the batch) follow the teacher's
softened distribution over the same candidates, ``T^2 * KL(sm(s_T / T) || sm(s_S / T))``, batch
mean: Hinton's KD on score lists, with no hard-negative selection and no weighting (the baseline
that DCD refines). A dual encoder student scores through its own head (``StudentScoreHead``), as in
DCD."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from distill.objectives.base import Objective
from distill.objectives.candidates import StudentScoreHead, check_candidates, sample_candidates
from distill.objectives.kd import kd_loss
from distill.registry import objectives


@objectives.register("score_kd")
class ScoreDistillation(Objective):
    """KD on the scores of each query's candidate captions (retrieval), default 16 candidates."""

    student_needs = frozenset({"embedding", "text_embedding"})
    relates_samples = True
    teacher_needs = frozenset({"embedding", "text_embedding"})
    uses_labels = True
    task_kinds = frozenset({"retrieval"})

    def __init__(self, candidates: Annotated[int, Field(ge=2)] = 16, temperature: float = 1.0):
        super().__init__()
        self.candidates, self.temperature = candidates, temperature
        self.student_head = StudentScoreHead()

    def bind(self, ctx):
        super().bind(ctx)
        check_candidates(ctx, self.candidates)

    def forward(self, step):
        c = sample_candidates(step.labels, self.candidates)
        q = c[:, 0]
        return kd_loss(self.student_head(step.extra["student_scores"], q, c),
                       step.extra["teacher_scores"](q, c), self.temperature)
