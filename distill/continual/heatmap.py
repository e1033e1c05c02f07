"""A heatmap PNG of a run's accuracy matrices (rows: after training task i; columns: evaluated on
task j). Needs matplotlib, the ``plots`` extra: ``pip install 'distill-workbench[plots]'``."""
from __future__ import annotations

import math
import os
from pathlib import Path

from distill.continual.accuracy_matrix import EVALUATIONS, AccuracyMatrix

ANNOTATE_UP_TO = 10  # tasks; larger matrices are drawn without the numbers


def matplotlib_missing() -> str | None:
    """Why no heatmap can be drawn, or None when matplotlib is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return ("matplotlib is not installed, so no heatmap is drawn; "
                "pip install 'distill-workbench[plots]' for it")
    return None


def save_heatmap(matrices: dict[str, AccuracyMatrix], path: Path, title: str) -> None:
    """One panel per evaluation (``til``, ``cil``) side by side, accuracy 0-100 % in colour."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = next(iter(matrices.values())).tasks
    side = min(3.0 + 0.45 * tasks, 12.0)
    fig = Figure(figsize=(side * len(matrices) + 1.0, side), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    for ax, (kind, matrix) in zip(axes, matrices.items()):
        grid = [[row[j] if j < len(row) else math.nan for j in range(tasks)]
                for row in matrix.rows]
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        ax.set_title(EVALUATIONS[kind].split(" (")[0], fontsize=10)
        ax.set_xlabel("evaluated on task j")
        ax.set_ylabel("after training task i")
        ax.set_xticks(range(tasks))
        ax.set_yticks(range(tasks))
        if tasks <= ANNOTATE_UP_TO:
            for i, row in enumerate(matrix.rows):
                for j, value in enumerate(row):
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                            color="black" if value > 60 else "white")
    fig.colorbar(image, ax=list(axes), label="accuracy R[i][j] (%)", shrink=0.8)
    fig.suptitle(title, fontsize=11)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
