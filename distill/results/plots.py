"""``distill plot``: PNG figures of an experiment folder's runs, read from what the runs wrote
(each stage's CSV log, each run's metrics.json). Needs matplotlib, the ``plots`` extra.

- ``validation.png``: the validation metric per epoch, one line per variant: the mean over seeds,
  a band from the lowest to the highest seed where there are several;
- ``terms-<variant>.png``: each logged training term per epoch (its value before its weight;
  ``loss`` is the weighted sum), likewise, on a log scale when every value is positive;
- ``accuracy-matrix-<variant>.png``: a continual variant's accuracy matrices, averaged over seeds;
- ``retrieval.png``: RSUM against the time per query, a point per run, when the runs have both.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from distill.errors import UserError
from distill.results.recording import read_object
from distill.results.table import is_reference

PLOTS = "plots"  # the folder under runs/<name> the figures go to by default


def matplotlib_or_stop() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("plots need matplotlib, the plots extra: pip install -e '.[plots]'"
                        ) from None


def read_log(run_dir: Path) -> dict[str, dict[int, float]]:
    """Column -> epoch -> value from a stage's ``logs/metrics.csv`` (Lightning's CSV logger
    writes training and validation rows apart; an epoch's last value of a column counts)."""
    log = run_dir / "logs" / "metrics.csv"
    series: dict[str, dict[int, float]] = {}
    if not log.is_file():
        return series
    try:
        with open(log, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"is damaged ({type(e).__name__}); it is written by `distill run`: run "
                        f"that stage again", file=str(log)) from None
    for row in rows:
        try:
            epoch = int(row.get("epoch") or "")
        except (TypeError, ValueError):
            continue
        for column, text in row.items():
            if not isinstance(column, str) or not isinstance(text, str) or not text or \
                    column in ("epoch", "step"):
                continue  # a row longer or shorter than the header
            try:
                series.setdefault(column, {})[epoch] = float(text)
            except ValueError:
                continue
    return series


def variant_runs(exp_dir: Path) -> dict[str, list[Path]]:
    """Each variant's finished seed folders (``<variant>/seed<k>`` with a metrics.json), the
    teacher stages left out, in the experiment file's order."""
    from distill.results.report import variant_order

    order = variant_order(exp_dir) or []
    runs = {}
    folders = sorted((p for p in exp_dir.iterdir() if p.is_dir()),
                     key=lambda p: (order.index(p.name) if p.name in order else len(order),
                                    p.name))
    for folder in folders:
        if is_reference(folder.name) or folder.name.startswith((".", "_")) or \
                folder.name == PLOTS:
            continue
        seeds = sorted((s for s in folder.glob("seed*") if (s / "metrics.json").is_file()),
                       key=lambda s: s.name)
        if seeds:
            runs[folder.name] = seeds
    return runs


def mean_and_range(curves: list[dict[int, float]]
                   ) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Epochs every curve has; the mean, lowest and highest value over the curves at each."""
    epochs = sorted(set.intersection(*(set(c) for c in curves)))
    values = np.array([[c[e] for e in epochs] for c in curves])
    return epochs, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def figure(width: float = 7.0, height: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path) -> Path:
    """Written whole or not at all (a kill leaves the earlier figure)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def curves_figure(lines: dict[str, list[dict[int, float]]], title: str, ylabel: str, path: Path,
                  log: bool = False) -> Path | None:
    """One line per label (the mean over its curves) in a band from the lowest to the highest
    curve, the y axis logarithmic when ``log`` and every value is positive; None when nothing
    to draw."""
    lines = {label: curves for label, curves in lines.items() if curves}
    if not lines:
        return None
    fig = figure()
    ax = fig.subplots()
    positive = all(v > 0 for curves in lines.values() for c in curves for v in c.values())
    for label, curves in lines.items():
        epochs, mean, low, high = mean_and_range(curves)
        if not epochs:
            continue
        x = [e + 1 for e in epochs]
        ax.plot(x, mean, label=f"{label} (n={len(curves)})", linewidth=1.6,
                marker="o" if len(x) < 12 else None, markersize=3)  # a lone point shows
        if len(curves) > 1:
            ax.fill_between(x, low, high, alpha=0.15)
    if log and positive:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def headline(series: dict[str, dict[int, float]]) -> str | None:
    """The validation column a stage reports: the first ``val/`` column that is not the
    teacher's."""
    return next((c for c in sorted(series) if c.startswith("val/") and "teacher" not in c), None)


def plot_experiment(exp_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Every figure the runs in ``exp_dir`` allow, into ``out_dir`` (default
    ``<exp_dir>/plots``); returns the files written."""
    matplotlib_or_stop()
    runs = variant_runs(exp_dir)
    if not runs:
        raise UserError(f"{exp_dir}: no finished runs to plot; run the experiment first "
                        f"(`distill run FILE`)")
    out_dir = out_dir or exp_dir / PLOTS
    out_dir.mkdir(parents=True, exist_ok=True)
    name = exp_dir.name
    written = []
    logs = {variant: [read_log(seed) for seed in seeds] for variant, seeds in runs.items()}
    column = next((headline(s) for ls in logs.values() for s in ls if headline(s)), None)
    if column:
        written.append(curves_figure(
            {variant: [s[column] for s in ls if column in s] for variant, ls in logs.items()},
            f"{name}: {column[len('val/'):]} per epoch (mean over seeds, band: lowest to "
            f"highest)",
            column[len("val/"):], out_dir / "validation.png"))
    for variant, ls in logs.items():
        terms = sorted({c for s in ls for c in s if c.startswith("train/")})
        written.append(curves_figure(
            {term[len("train/"):]: [s[term] for s in ls if term in s] for term in terms},
            f"{name}: {variant}, training terms per epoch (mean over seeds, band: range)",
            "value (before its weight; loss: the weighted sum)",
            out_dir / f"terms-{variant}.png", log=True))
    metrics = {variant: [read_object(seed / "metrics.json") for seed in seeds] for variant, seeds in runs.items()}
    for variant, found in metrics.items():
        try:
            written.append(matrix_figure(variant, found, name,
                                         out_dir / f"accuracy-matrix-{variant}.png"))
        except (TypeError, ValueError, IndexError, KeyError):
            raise UserError(f"{exp_dir / variant}: an accuracy matrix (R in metrics.json) is "
                            f"damaged; delete that run's folder to run it again") from None
    written.append(retrieval_figure(metrics, name, out_dir / "retrieval.png"))
    written = [path for path in written if path is not None]
    if not written:
        raise UserError(f"{exp_dir}: nothing to draw: its runs have no per-epoch log "
                        f"(logs/metrics.csv), accuracy matrix or retrieval metrics")
    return written


def matrix_figure(variant: str, found: list[dict], name: str, path: Path) -> Path | None:
    """A continual variant's accuracy matrices averaged over its seeds (runs with the same
    number of tasks)."""
    from distill.continual.accuracy_matrix import AccuracyMatrix
    from distill.continual.heatmap import save_heatmap

    with_r = [m["R"] for m in found if isinstance(m.get("R"), dict)]
    if not with_r:
        return None
    mean = {}
    for kind, first in with_r[0].items():
        rows = [r[kind] for r in with_r if len(r.get(kind, ())) == len(first)]
        mean[kind] = AccuracyMatrix(tuple(
            tuple(float(v) for v in np.mean([run[i] for run in rows], axis=0))
            for i in range(len(first))))
    save_heatmap(mean, path, f"{name}: {variant}, mean over {len(with_r)} seeds")
    return path


def retrieval_figure(metrics: dict[str, list[dict]], name: str, path: Path) -> Path | None:
    """RSUM against microseconds per image query, a point per run and a marker per variant."""
    points = {variant: [(m["latency_i2t_us"], m["rsum"]) for m in found
                        if _finite(m.get("latency_i2t_us")) and _finite(m.get("rsum"))]
              for variant, found in metrics.items()}
    points = {variant: p for variant, p in points.items() if p}
    if not points:
        return None
    fig = figure()
    ax = fig.subplots()
    for variant, p in points.items():
        ax.scatter(*zip(*p), label=variant, s=28)
    ax.set_xscale("log")
    ax.set_xlabel("microseconds per image query (log)")
    ax.set_ylabel("RSUM (sum of the six R@K)")
    ax.set_title(f"{name}: retrieval quality against time per query", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
