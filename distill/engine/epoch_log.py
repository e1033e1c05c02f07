"""The per-epoch CSV log of a stage (``logs/metrics.csv``), kept across a resume.

Lightning's CSVLogger deletes ``metrics.csv`` when it opens a folder that already has one, so a
stage resumed at epoch 3 would lose epochs 0-2. Here the rows of the epochs the checkpoint holds
(``epoch <= through_epoch``) are kept and the resumed epochs appended; rows of an epoch that was
interrupted before its checkpoint was written are dropped, since that epoch runs again.
"""
from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment


class EpochLog(CSVLogger):
    """``<run_dir>/logs/metrics.csv``; ``through_epoch``: the last epoch of the checkpoint the
    stage resumes from (None: a fresh stage, any old log is replaced)."""

    def __init__(self, run_dir: str | Path, through_epoch: int | None = None):
        super().__init__(str(run_dir), name="logs", version="")
        self.through_epoch = through_epoch

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        header, kept = self._kept_rows(path)
        writer = super().experiment  # Lightning's writer, which removes the old file
        if kept:
            with open(path, "w", newline="") as f:
                table = csv.DictWriter(f, fieldnames=header)
                table.writeheader()
                table.writerows(kept)
            writer.metrics_keys = list(header)
        return writer

    def _kept_rows(self, path: Path) -> tuple[list[str], list[dict]]:
        if self.through_epoch is None or not path.is_file():
            return [], []
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = [row for row in reader
                    if row.get("epoch") not in (None, "")
                    and float(row["epoch"]) <= self.through_epoch]
            return list(reader.fieldnames or []), rows
