"""``distill rebuild OUT``: the results store made again from the run folders. Each run's
``metrics.json`` (a continual run's ``manifest.json``, a teacher stage's ``identity.json`` for its
seed) is the source of truth, so a store lost, damaged, or written from several machines on a
network filesystem (where SQLite's locking is not safe) can be rebuilt, equal to the one the runs
wrote. The new store is written beside the old one and then takes its place."""
from __future__ import annotations

import os
from pathlib import Path

from distill.errors import UserError
from distill.results.recording import numeric, read_object, record_stage
from distill.results.store import ResultsStore
from distill.results.table import is_reference

STORE = "results.sqlite"


def experiment_folders(out: Path) -> list[Path]:
    if not out.is_dir():
        raise UserError("no such folder; give the output root of `distill run` (e.g. runs)",
                        file=str(out))
    found = sorted(d for d in out.iterdir() if d.is_dir() and (d / "source.json").is_file())
    if not found:
        raise UserError(f"{out} holds no experiment folder made by `distill run` (runs/<name> "
                        f"with source.json); give the output root")
    return found


def record_folder(store: ResultsStore, exp_dir: Path) -> int:
    """Every finished stage of one experiment folder into ``store``; returns how many."""
    from distill.continual.manifest import FILE as MANIFEST, Manifest
    from distill.continual.runner import task_metrics

    count = 0
    for folder in sorted(p for p in exp_dir.iterdir() if p.is_dir()):
        if is_reference(folder.name):  # a teacher stage, recorded at its own seed
            if (folder / "metrics.json").is_file() and (folder / "identity.json").is_file():
                seed = int(read_object(folder / "identity.json").get("seed", 0))
                store.record(exp_dir.name, folder.name, seed,
                             numeric(read_object(folder / "metrics.json")))
                count += 1
            continue
        for run in sorted(folder.glob("seed*")):
            if not run.name[4:].isdigit():
                continue
            seed = int(run.name[4:])
            if (run / MANIFEST).is_file():  # a task sequence: its rows after each finished task
                completed = read_object(run / MANIFEST).get("completed", [])
                manifest = Manifest(run / MANIFEST, "", None, completed)
                for task in range(len(completed)):
                    store.record(exp_dir.name, folder.name, seed, task_metrics(manifest, task),
                                 task=task)
                count += bool(completed)
            elif (run / "metrics.json").is_file():  # a finished stage
                record_stage(store, exp_dir.name, folder.name, seed,
                             read_object(run / "metrics.json"))
                count += 1
    return count


def rebuild_store(out: Path) -> tuple[Path, int]:
    """``<out>/results.sqlite`` made again from the run folders under ``out``; returns its path
    and the number of stages recorded. Run it when no ``distill run`` writes into ``out``."""
    folders = experiment_folders(out)
    target = out / STORE
    tmp = out / f".{STORE}.{os.getpid()}.tmp"
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    store = ResultsStore(tmp)
    try:
        count = sum(record_folder(store, exp_dir) for exp_dir in folders)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for old in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        old.unlink(missing_ok=True)  # an old write-ahead log must not be replayed into the new
    os.replace(tmp, target)
    return target, count
