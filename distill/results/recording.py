"""What a finished stage writes to the results store, from its metrics (what ``fit`` returned, or
its ``metrics.json``): one writer for ``distill run`` and ``distill rebuild``."""
from __future__ import annotations

import json
from pathlib import Path

from distill.engine.stage import TEACHER_METRICS
from distill.errors import UserError
from distill.results.store import ResultsStore
from distill.results.table import teacher_row

BOOKKEEPING = {"epochs", "train_seconds", "history"}


def numeric(metrics: dict) -> dict:
    """The metrics that go to the results store (not the bookkeeping)."""
    return {k: float(v) for k, v in metrics.items() if k not in BOOKKEEPING}


def record_stage(store: ResultsStore, experiment: str, variant: str, seed: int,
                 metrics: dict) -> dict:
    """One finished stage's rows: the student's, and a reported teacher's as the row
    ``<variant>:teacher``; returns the student's."""
    metrics = dict(metrics)
    teacher = metrics.pop(TEACHER_METRICS, None)
    student = numeric(metrics)
    store.record(experiment, variant, seed, student)
    if teacher:  # a co-trained or ensemble teacher's accuracy: a row of its own
        store.record(experiment, teacher_row(variant), seed, numeric(teacher))
    return student


def read_object(path: Path) -> dict:
    """A JSON object a run wrote (metrics.json, manifest.json, identity.json); a damaged one is
    one line naming it."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"is damaged ({type(e).__name__}); it is written by `distill run`: "
                        f"delete its run folder to run it again", file=str(path)) from None
    if not isinstance(found, dict):
        raise UserError("is not a JSON object; it is written by `distill run`: delete its run "
                        "folder to run it again", file=str(path))
    return found
