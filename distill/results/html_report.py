"""``distill report``: one self-contained HTML page of an experiment folder that opens offline in
any browser: the method table with 95% intervals and paired tests, the figures of
:mod:`distill.results.plots` inlined as PNG data, and each run's configuration and metrics."""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from distill.atomic_write import atomic_write_text
from distill.results.plots import plot_experiment, variant_runs
from distill.results.table import is_reference

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table.method-table { border-collapse: collapse; margin: 1em 0; }
table.method-table td, table.method-table th { padding: 0.25em 0.7em; text-align: right; }
table.method-table td:first-child, table.method-table th:first-child { text-align: left; }
table.method-table thead { border-bottom: 2px solid #444; }
table.method-table tr.reference { color: #666; border-bottom: 1px solid #aaa; }
caption { caption-side: bottom; text-align: left; font-size: 0.85em; color: #444; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
summary { cursor: pointer; }
"""


def write_report(exp_dir: Path, out: Path | None = None) -> Path:
    """The page for ``exp_dir`` (default ``<exp_dir>/report.html``), with its figures drawn
    afresh under ``<exp_dir>/plots``; returns its path."""
    from distill.results.report import comparison

    figures = plot_experiment(exp_dir)
    table = comparison(exp_dir, "html", level=0.95, alpha=0.05)
    parts = [f"<h1>{escape(exp_dir.name)}</h1>", "<h2>Results</h2>", table, "<h2>Figures</h2>"]
    for path in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f'<figure><img alt="{escape(path.stem)}" '
                     f'src="data:image/png;base64,{data}"><figcaption>{escape(path.name)}'
                     f'</figcaption></figure>')
    parts.append("<h2>Runs</h2>")
    stages = sorted(p for p in exp_dir.iterdir() if p.is_dir() and is_reference(p.name))
    for folder in stages + [seed for seeds in variant_runs(exp_dir).values() for seed in seeds]:
        parts.append(run_section(exp_dir, folder))
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(exp_dir.name)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    out = out or exp_dir / "report.html"
    atomic_write_text(out, page)
    return out


def run_section(exp_dir: Path, folder: Path) -> str:
    """A collapsed block with one run's (or teacher stage's) configuration and metrics."""
    label = str(folder.relative_to(exp_dir))
    blocks = []
    for name in ("config.yaml", "metrics.json"):
        path = folder / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            blocks.append(f"<h4>{escape(name)}</h4><pre>{escape(text)}</pre>")
    return (f"<details><summary>{escape(label)}</summary>" + "".join(blocks)
            + "</details>")
