"""The rationales a generation objective learns from, per training problem: positives (teacher
samples that pass self-consistency, or the gold rationale) and the teacher's negatives (samples
that fail it), and :class:`RationaleObjective`, the base of ``dss`` and ``qcrd`` that gathers them
before training: from the data when it brings teacher rationales, else sampled from the teacher
once and kept beside its weights."""
from __future__ import annotations

import hashlib
import json
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.objectives.class_means import file_digest, training_set_identity
from distill.task_kinds.generation import trimmed


def self_consistency(answers: list[list[str | None]], gold: list[str]) -> torch.Tensor:
    """N x K: sample k of problem i is kept when its answer equals the gold label and the gold
    label is a most frequent answer among problem i's samples (the majority vote of
    self-consistency, Wang et al. 2023, agreeing with the label; a tie that includes the label
    keeps it). Answers compare without case, surrounding spaces and trailing punctuation; None
    (no answer) never counts."""
    width = max((len(row) for row in answers), default=0)
    kept = torch.zeros(len(answers), width, dtype=torch.bool)
    def normal(answer: str) -> str:
        return answer.strip().rstrip(string.punctuation + string.whitespace).casefold()

    for i, (row, label) in enumerate(zip(answers, gold)):
        norm = [normal(a) if a is not None else None for a in row]
        votes = Counter(a for a in norm if a is not None)
        target = normal(label)
        if votes and votes[target] == max(votes.values()):
            for k, a in enumerate(norm):
                kept[i, k] = a == target
    return kept


def _distinct(rows: list[torch.Tensor], width: int, length: int) -> torch.Tensor:
    out = torch.zeros(width, length, dtype=torch.long)
    seen: list[tuple] = []
    for row in rows:
        key = tuple(row.tolist())
        if key not in seen:
            out[len(seen)] = row
            seen.append(key)
    return out


@dataclass
class RationalePool:
    """``positives`` N x P x L and ``negatives`` N x Q x L token ids, distinct per problem,
    absent rows all padding; the counts for the results table."""

    positives: torch.Tensor
    negatives: torch.Tensor
    sampled: int
    kept: int
    without_positive: int

    @classmethod
    def from_samples(cls, tokens: torch.Tensor, answers: list[list[str | None]],
                     gold: list[str]) -> "RationalePool":
        present = (tokens != 0).any(dim=-1)
        kept = self_consistency(answers, gold) & present
        failed = present & ~kept
        n, _, length = tokens.shape
        width_p = max(int(kept.sum(1).max()) if n else 0, 1)
        width_n = int(failed.sum(1).max()) if n else 0
        positives = torch.stack([_distinct(list(tokens[i][kept[i]]), width_p, length)
                                 for i in range(n)])
        negatives = torch.stack([_distinct(list(tokens[i][failed[i]]), width_n, length)
                                 for i in range(n)])
        return cls(positives, negatives, int(present.sum()), int(kept.sum()),
                   int((~kept.any(dim=1)).sum()))

    @classmethod
    def gold(cls, rationales: torch.Tensor) -> "RationalePool":
        present = (rationales != 0).any(dim=-1)
        nothing = torch.zeros(len(rationales), 0, rationales.shape[1], dtype=torch.long)
        return cls(rationales[:, None], nothing, 0, 0, int((~present).sum()))


class RationaleObjective(Objective):
    """A generation objective that learns from rationales: ``rationales: teacher`` (the data's
    teacher rationales, else ``samples`` per problem sampled from the teacher at
    ``temperature``, filtered by self-consistency) or ``gold`` (the data's gold rationales, e.g.
    to train the teacher)."""

    student_needs: ClassVar[frozenset[str]] = frozenset()
    uses_labels = True
    task_kinds = frozenset({"generation"})

    def __init__(self, rationales: Literal["teacher", "gold"] = "teacher", samples: int = 5,
                 temperature: float = 0.7):
        super().__init__()
        self.rationales, self.samples, self.temperature = rationales, samples, temperature
        self.pool: RationalePool | None = None
        self._teacher = None
        self._cache: Path | None = None
        self._seed = 0

    @classmethod
    def reads_teacher(cls, params: dict) -> bool:
        return params.get("rationales", "teacher") == "teacher"

    def bind(self, ctx):
        super().bind(ctx)
        kind = ctx.data.kind
        if self.rationales == "gold":
            if not (ctx.data.splits.train.rationale != 0).any():
                raise ConfigError(f"{ctx.key}.rationales", "the training set has no gold "
                                                           "rationales; use rationales: teacher")
            return
        if kind.given is None:
            if ctx.teacher_role is None:
                raise ConfigError(ctx.key, f"{self.registered_name} learns from teacher "
                                           f"rationales: add a `teacher:` to sample them from, or "
                                           f"give \"rationales\" in the data")
            self._teacher = ctx.teacher_role
            self._seed = ctx.experiment.teacher.seed if ctx.experiment is not None else 0
            if ctx.teacher_weights is not None and ctx.experiment is not None:
                sources = ctx.data.splits.train.explain
                identity = {"weights": file_digest(ctx.teacher_weights),
                            "set": training_set_identity(ctx.experiment, ctx.data),
                            "sources": hashlib.sha256(sources.numpy().tobytes()).hexdigest(),
                            "samples": self.samples, "temperature": self.temperature,
                            "seed": self._seed}
                key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
                self._cache = (Path(ctx.teacher_weights).parent
                               / f"rationales-{key.hexdigest()[:16]}.pt")

    def on_fit_start(self, trainer, pl_module):
        if self.pool is None:
            self.pool = self.gather(trainer.datamodule, pl_module.device,
                                    say=print if trainer.is_global_zero else lambda _: None)

    def gather(self, data, device, say=print) -> RationalePool:
        """The positives and the teacher's negatives of every training problem."""
        from teachers.rationale_source import teacher_rationales

        kind, train = data.kind, data.splits.train
        if self.rationales == "gold":
            return RationalePool.gold(train.rationale)
        if kind.given is not None:
            tokens, answers = kind.given.tokens, kind.given.answers
        else:
            tokens = teacher_rationales(self._teacher.network.net, train.explain, self.samples,
                                        self.temperature, train.rationale.shape[1], self._seed,
                                        self._cache, say, device)
            texts = kind.tokenizer.decode(tokens.flatten(0, 1))
            flat = kind.answer(texts)
            answers = [flat[i * self.samples:(i + 1) * self.samples] for i in range(len(tokens))]
        pool = RationalePool.from_samples(tokens, answers, kind.train_answers)
        say(f"teacher rationales: {pool.kept} of {pool.sampled} kept by self-consistency; "
            f"{pool.without_positive} problems without a positive (their rationale terms are "
            f"skipped)")
        return pool

    def summary(self) -> dict[str, float]:
        if self.pool is None or self.rationales == "gold":
            return {}
        return {"rationales_sampled": self.pool.sampled, "rationales_kept": self.pool.kept,
                "problems_without_positive": self.pool.without_positive}


def rows_nll(scorer, sources: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """B x K token-mean NLLs of each problem's K candidate rationales (B x K x L) given its
    source; ``inf`` where a candidate is absent (all padding). One encoder pass per source."""
    rows = trimmed(rows)
    present = (rows != 0).any(dim=-1)
    out = torch.full(present.shape, float("inf"), device=rows.device)
    if present.any():
        nll = scorer.nll(sources, rows[present], repeats=present.sum(dim=1))
        out = out.masked_scatter(present, nll)
    return out
