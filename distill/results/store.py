"""The results store: one SQLite file per output root, one row per
(experiment, variant, seed, task, metric), safe with several processes writing at once.

Every operation opens its own connection and keeps its transaction short (``BEGIN IMMEDIATE``);
the file is in WAL mode and a writer waits up to a minute for another one to finish.
"""
from __future__ import annotations

import math
import os
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from distill.errors import UserError, shorten

NO_TASK = -1  # the task of a row from a run that is not continual
BUSY_TIMEOUT_S = 60.0
COLUMNS = ("experiment", "variant", "seed", "task", "metric", "value", "recorded_at")
SCHEMA = """CREATE TABLE IF NOT EXISTS results (
    experiment TEXT NOT NULL, variant TEXT NOT NULL, seed INTEGER NOT NULL,
    task INTEGER NOT NULL, metric TEXT NOT NULL, value REAL, recorded_at TEXT NOT NULL,
    PRIMARY KEY (experiment, variant, seed, task, metric))"""


def _immutable(path: Path) -> bool:
    """Whether the file cannot be opened for writing even by its owner (``chattr +i``, a
    read-only mount), which ``os.access`` does not see for root."""
    try:
        with open(path, "r+b"):
            return False
    except OSError:
        return True


class ResultsStore:
    """The results of every run under one output root, e.g. ``runs/results.sqlite``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def record(self, experiment: str, variant: str, seed: int, metrics: dict[str, float],
               task: int = NO_TASK) -> None:
        """Write one run's metrics (one transaction); a row already there for the same key is
        replaced."""
        recorded_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        rows = [(experiment, variant, int(seed), int(task), metric, float(value), recorded_at)
                for metric, value in metrics.items()]
        with self._writing() as db:
            db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def rows(self, experiment: str | None = None) -> list[dict]:
        """All rows, or one experiment's, as dicts keyed by column name (NaN values come back as
        NaN, not None)."""
        query = f"SELECT {', '.join(COLUMNS)} FROM results"
        params: tuple = ()
        if experiment is not None:
            query += " WHERE experiment = ?"
            params = (experiment,)
        query += " ORDER BY experiment, variant, seed, task, metric"
        with self._reading() as db:
            found = db.execute(query, params).fetchall()
        rows = [dict(zip(COLUMNS, row)) for row in found]
        for row in rows:
            row["value"] = math.nan if row["value"] is None else row["value"]
        return rows

    def experiments(self) -> list[str]:
        """The names of the experiments with results, sorted."""
        with self._reading() as db:
            found = db.execute("SELECT DISTINCT experiment FROM results ORDER BY experiment")
            return [name for (name,) in found.fetchall()]

    def delete(self, experiment: str, variant: str, seed: int) -> int:
        """Remove one run's rows (every task and metric); returns how many were removed."""
        self._require_file()
        with self._writing() as db:
            removed = db.execute(
                "DELETE FROM results WHERE experiment = ? AND variant = ? AND seed = ?",
                (experiment, variant, int(seed)))
            return removed.rowcount

    def check(self) -> None:
        """Refuse (UserError) a file at the store's path that is not a results store, before any
        run writes; a missing or empty file is fine (it is created)."""
        if self.path.is_symlink() and not self.path.exists():
            raise UserError("is a link to nothing; remove it or give another --out",
                            file=str(self.path))
        if not self.path.exists():
            return
        if not self.path.is_file():
            what = "a folder" if self.path.is_dir() else "not a regular file"
            raise UserError(f"not a results store ({what}); give another --out",
                            file=str(self.path))
        if self.path.stat().st_size == 0:
            return
        with self._reading(empty_ok=True):
            pass
        if not os.access(self.path, os.W_OK) or _immutable(self.path):
            raise UserError("cannot be written (read-only); give another --out",
                            file=str(self.path))

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one ``BEGIN IMMEDIATE`` transaction, committed on success; creates
        the folder, the file and the table when missing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect(self.path)
        try:
            self._use_wal(db)
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(SCHEMA)
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    @contextmanager
    def _reading(self, empty_ok: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection to the existing store; never creates the file. ``empty_ok``: a database
        without any table passes (the first run creates the table)."""
        self._require_file()
        try:
            db = self._connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True)
        except sqlite3.DatabaseError as error:
            raise UserError(f"cannot be opened ({error})", file=str(self.path)) from None
        try:
            try:
                tables = [name for (name,) in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
                has_table = "results" in tables
                columns = [row[1] for row in db.execute("PRAGMA table_info(results)")]
            except sqlite3.DatabaseError as error:
                raise UserError(f"not a results store ({error}); give another --out or move the "
                                f"file away", file=str(self.path)) from None
            if empty_ok and not tables:
                yield db
                return
            if not has_table:
                raise UserError("not a results store (no results table); give another --out or "
                                "move the file away", file=str(self.path))
            if sorted(columns) != sorted(COLUMNS):
                raise UserError(f"not a results store: its results table has the columns "
                                f"{shorten(', '.join(map(str, columns)), 120)[1:-1]}, not "
                                f"{', '.join(COLUMNS)}; give another --out or move the file away",
                                file=str(self.path))
            yield db
        finally:
            db.close()

    @staticmethod
    def _use_wal(db: sqlite3.Connection) -> None:
        """Switch a new store to WAL (kept in the file). The switch fails at once, without waiting,
        while another process holds the file, so it is retried until the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                db.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _require_file(self) -> None:
        if self.path.exists() and not self.path.is_file():
            raise UserError("not a results store (not a file); give another folder or move it "
                            "away", file=str(self.path))
        if not self.path.is_file():
            raise UserError(f"no results store at {self.path}; run `distill run` first")

    @staticmethod
    def _connect(target: str | Path, uri: bool = False) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are explicit) that waits for writers."""
        db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, uri=uri)
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return db


class NoStore:
    """The results store of a process that records nothing (a follower of a multi-process run:
    the first process records)."""

    def check(self) -> None:
        pass

    def record(self, *args, **kwargs) -> None:
        pass
