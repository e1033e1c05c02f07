"""The environments behind a table's rows (each run folder's ``environment.json``), and the note a
table carries when its rows come from more than one: which values differ, for which rows."""
from __future__ import annotations

from pathlib import Path

from distill.environment import flat, read
from distill.results.table import MethodTable, is_reference, is_teacher_row

ORDER = ("torch", "python", "cuda", "cudnn", "commit", "dirty", "workbench", "threads",
         "deterministic", "start")  # named first in a note; other packages and devices follow


def run_folder(experiment_dir: Path, row: str, seed: int) -> Path:
    """The folder of a table row's run: a teacher stage's own folder, a variant's teacher that
    of the variant's run, any other row ``<variant>/seed<k>``."""
    if is_reference(row):
        return experiment_dir / row
    variant = row.removesuffix(":teacher") if is_teacher_row(row) else row
    return experiment_dir / variant / f"seed{seed}"


def row_environments(table: MethodTable, experiment_dir: Path) -> dict[str, dict[int, dict | None]]:
    """For each row and seed of ``table``: the flattened record of its run, None when unknown."""
    out: dict[str, dict[int, dict | None]] = {}
    for row in table.shown:
        seeds = sorted({seed for cell in table.cells[row].values() for seed in cell.seeds})
        out[row] = {}
        for seed in seeds:
            record = read(run_folder(experiment_dir, row, seed))
            out[row][seed] = flat(record) if record is not None else None
    return out


def runs_text(runs: list[tuple[str, int]], references: set[str]) -> str:
    """``kd seeds 0, 1; teacher`` from (row, seed) pairs, rows in first-seen order."""
    seeds: dict[str, list[int]] = {}
    for row, seed in runs:
        seeds.setdefault(row, []).append(seed)
    parts = []
    for row, values in seeds.items():
        if row in references:
            parts.append(row)
        else:
            parts.append(f"{row} seed{'s' if len(values) > 1 else ''} "
                         f"{', '.join(str(s) for s in sorted(values))}")
    return "; ".join(parts)


def environment_note(environments: dict[str, dict[int, dict | None]],
                     references: set[str] = frozenset()) -> str | None:
    """None when every row with a record shares one environment and none lacks it; otherwise
    each differing value with its rows, and the rows without a record."""
    known = [(row, seed, env) for row, by_seed in environments.items()
             for seed, env in by_seed.items() if env is not None]
    unknown = [(row, seed) for row, by_seed in environments.items()
               for seed, env in by_seed.items() if env is None]
    if not known:
        return ("Environment unknown: no row's run folder holds an environment record (runs "
                "made before records were kept)") if unknown else None
    keys = list(ORDER) + sorted({k for _, _, env in known for k in env} - set(ORDER))
    parts = []
    for key in keys:
        groups: dict[str, list[tuple[str, int]]] = {}
        for row, seed, env in known:
            groups.setdefault(str(env.get(key, "not recorded")), []).append((row, seed))
        if len(groups) > 1:
            parts.append(f"{key} " + " against ".join(
                f"{value} ({runs_text(runs, references)})" for value, runs in groups.items()))
    missing = (f"no record, environment unknown ({runs_text(unknown, references)})"
               if unknown else None)
    if parts:
        return "Rows come from different environments: " + "; ".join(parts + [missing] * bool(
            missing))
    return f"Environment of some rows unknown: {missing}" if missing else None


def attach(table: MethodTable, experiment_dir: Path) -> MethodTable:
    """``table`` with its rows' environments and, when they differ, the note in its caption."""
    table.environments = row_environments(table, experiment_dir)
    table.environment_note = environment_note(table.environments, set(table.references))
    return table
