"""A run's per-epoch CSV log as the tests read it."""
from __future__ import annotations

import csv
from pathlib import Path


def log_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))
