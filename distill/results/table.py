"""The method table: one row per variant, one column per metric, mean ± std over seeds, the best
variant per column marked, the difference to a baseline variant; and its renderers (rich,
Markdown, CSV, JSON, LaTeX).

The teacher stages (``teacher``, and ``teacher-<hash>`` for other teachers of the same file, e.g.
an ensemble's members) are reference rows: shown first, never the baseline, never marked best.
A variant's own teacher (co-trained, or an ensemble) is shown right after it, never marked best.
For continual runs each (variant, seed, metric) contributes its value after the final task.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np
from rich.markup import escape as markup_escape
from rich.table import Table

from distill.errors import UserError
from distill.registry import nearest
from distill.results.statistics import (MIN_PAIRS, PairedTest, confidence_half_width,
                                        paired_test)

TEACHER = "teacher"


def teacher_row(variant: str) -> str:
    """The row of a variant's own teacher (a co-trained peer, an ensemble), shown right after it;
    a teacher, so never marked best and never the baseline."""
    return f"{variant}:teacher"


def is_teacher_row(row: str) -> bool:
    return row.endswith(":teacher")


def is_reference(row: str) -> bool:
    """A teacher stage's row: ``teacher`` or ``teacher-<hash>`` (variant names cannot be these)."""
    return row == TEACHER or row.startswith(TEACHER + "-")

LOWER_IS_BETTER = ("forgetting", "loss", "error", "latency")
DASH = "—"


def lower_is_better(metric: str) -> bool:
    """True for metrics to minimise (forgetting, losses, errors, latency); BWT and accuracies are
    maximised."""
    return any(word in metric.lower() for word in LOWER_IS_BETTER)


# counts that describe a run rather than rank it: no best mark, no difference to the baseline
COUNTS = ("rationales_sampled", "rationales_kept", "problems_without_positive",
          "negatives_teacher", "negatives_student")


def is_count(metric: str) -> bool:
    return metric in COUNTS


# retrieval: R@K by direction, then their sum, then the time per query; generation: the answer
# accuracy, then the rationales and negatives behind it
PREFERRED = tuple(f"{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)) + \
    ("rsum", "rsum_best", "latency_i2t_us", "latency_t2i_us", "answer_acc", "answer_acc_best") + \
    COUNTS


def metric_order(metric: str) -> tuple:
    """Columns in the order a reader expects: the retrieval metrics as in papers (image -> text
    R@1/5/10, text -> image, RSUM, latency), the generation metrics (answer accuracy, then the
    counts), every other metric alphabetically."""
    return (PREFERRED.index(metric), "") if metric in PREFERRED else (len(PREFERRED), metric)


@dataclass(frozen=True)
class Cell:
    """One variant's values of one metric, one per seed (``seeds``, in the same order)."""

    values: tuple[float, ...]
    seeds: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1); None for a single seed."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.values))


@dataclass
class MethodTable:
    """Variants x metrics. ``variants`` are the compared rows in display order, ``references``
    the teacher stages' rows shown above them; ``cells[row][metric]`` holds every row's values."""

    metrics: list[str]
    variants: list[str]
    cells: dict[str, dict[str, Cell]]
    baseline: str | None
    notes: dict[str, str] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    level: float | None = None  # cells show this confidence interval instead of the std
    alpha: float | None = None  # differences to the baseline are tested at this level
    measured: str | None = None  # the metric of every column when columns are not metrics
    compares: bool = True  # rows are methods: a baseline, differences, the best marked
    row_title: str = "variant"
    grid: bool = False  # a sweep's grid: the best cell of the whole table is marked
    # row -> seed -> its run's environment (flattened record, None: unknown), and the note
    # when they differ (distill.results.environments)
    environments: dict[str, dict[int, dict | None]] = field(default_factory=dict)
    environment_note: str | None = None

    @classmethod
    def from_rows(cls, rows: list[dict], metrics: list[str] | None = None,
                  baseline: str | None = None, order: list[str] | None = None,
                  notes: dict[str, str] | None = None, level: float | None = None,
                  alpha: float | None = None, measured: str | None = None,
                  compares: bool = True, row_title: str = "variant",
                  grid: bool = False) -> "MethodTable":
        """Build the table from results-store rows of one experiment.

        ``metrics``: the columns (default: every metric, in :func:`metric_order`); ``order``: the variants shown
        first, in this order (the others follow alphabetically); ``baseline``: the variant the
        differences are taken to (default: the first shown); ``notes``: metric definitions for the
        caption (those of the metrics shown are kept); ``level``: show each cell's confidence
        interval at this level (e.g. 0.95) instead of its std; ``alpha``: test each difference
        to the baseline with a paired t-test over the shared seeds at this level (e.g. 0.05).
        The other keywords serve tables pivoted across experiments (``metric`` in the rows is
        then a column's label): ``measured``, the metric every column shows; ``compares``: False
        when the rows are not methods (no baseline, differences, best or reference rows);
        ``row_title``: the first column's title; ``grid``: mark the best cell of the whole
        table (a sweep's grid) rather than each column's.
        """
        if not rows:
            raise UserError("no results to compare; run `distill run` first")
        experiments = {row["experiment"] for row in rows}
        if len(experiments) > 1:
            raise ValueError(f"rows of several experiments: {sorted(experiments)}")
        final: dict[tuple[str, int, str], dict] = {}
        for row in rows:
            key = (row["variant"], row["seed"], row["metric"])
            if key not in final or row["task"] > final[key]["task"]:
                final[key] = row
        available = sorted({metric for _, _, metric in final}, key=metric_order)
        metrics = list(metrics) if metrics else available
        for metric in metrics:
            if metric not in available:
                raise UserError(f"no metric {metric!r} in the results{nearest(metric, available)}; "
                                f"available: {', '.join(available)}")
        cells: dict[str, dict[str, Cell]] = {}
        for (variant, seed, metric), row in sorted(final.items()):
            if metric in metrics:
                per_variant = cells.setdefault(variant, {})
                previous = per_variant.get(metric, Cell(()))
                per_variant[metric] = Cell(previous.values + (row["value"],),
                                           previous.seeds + (seed,))
        students = [name for name in cells if not (compares and is_reference(name))]
        ordered = [row for name in (order or []) for row in (name, teacher_row(name))
                   if row in students]
        variants = ordered + sorted(set(students) - set(ordered))
        baseline = baseline if compares else None
        if baseline is not None and baseline not in variants:
            why = ("a teacher is a reference row, never the baseline" if is_reference(baseline)
                   else f"no variant {baseline!r} in the results{nearest(baseline, variants)}")
            raise UserError(f"baseline: {why}; variants: {', '.join(variants)}")
        if baseline is not None and is_teacher_row(baseline):
            raise UserError(f"baseline: {baseline!r} is a variant's teacher, never the baseline; "
                            f"variants: {', '.join(v for v in variants if not is_teacher_row(v))}")
        if compares:
            baseline = baseline or next((v for v in variants if not is_teacher_row(v)), None)
        references = sorted((name for name in cells if compares and is_reference(name)),
                            key=lambda name: (name != TEACHER, name))
        return cls(metrics, variants, cells, baseline,
                   {metric: text for metric, text in (notes or {}).items()
                    if metric in metrics or metric == measured},
                   references, level, alpha, measured, compares, row_title, grid)

    @property
    def shown(self) -> list[str]:
        """Every row in display order: the teachers (when present) first, then the variants."""
        return self.references + self.variants

    def cell(self, variant: str, metric: str) -> Cell | None:
        return self.cells[variant].get(metric)

    def metric_of(self, column: str) -> str:
        """The metric a column shows (its direction, whether it is a count)."""
        return self.measured or column

    def differs(self, column: str) -> bool:
        """Whether a column has differences to the baseline beside it."""
        return self.compares and not is_count(self.metric_of(column))

    def best(self, metric: str) -> set[str]:
        """The variants with the best mean in one column (several on a tie; never a teacher, frozen
        or co-trained; none for a count)."""
        if is_count(self.metric_of(metric)) or not (self.compares or self.grid):
            return set()
        columns = self.metrics if self.grid else [metric]
        means = {(variant, column): cell.mean for variant in self.variants
                 for column in columns if not is_teacher_row(variant)
                 and (cell := self.cell(variant, column)) and not math.isnan(cell.mean)}
        if not means:
            return set()
        target = (min if lower_is_better(self.metric_of(metric)) else max)(means.values())
        return {variant for (variant, column), mean in means.items()
                if mean == target and column == metric}

    def delta(self, variant: str, metric: str) -> float | None:
        """Mean of ``variant`` minus mean of the baseline; None for the baseline itself or a
        missing cell."""
        if variant == self.baseline or self.baseline is None or not self.differs(metric):
            return None
        cell, reference = self.cell(variant, metric), self.cell(self.baseline, metric)
        return cell.mean - reference.mean if cell and reference else None

    def test(self, variant: str, metric: str) -> PairedTest | None:
        """The paired t-test of ``variant`` against the baseline over their shared seeds, when
        the table tests (``alpha``) and the row has a difference; a teacher stage's row (its
        seed is not a student's) is not tested."""
        if (self.alpha is None or variant in self.references
                or self.delta(variant, metric) is None):
            return None
        return paired_test(self.cell(variant, metric).by_seed(),
                           self.cell(self.baseline, metric).by_seed())

    def spread(self, cell: Cell) -> float | None:
        """What follows ± in a cell: the confidence interval's half-width, or the std."""
        return cell.std if self.level is None else confidence_half_width(cell.values, self.level)

    def role(self, variant: str) -> str:
        """'reference' for a teacher stage, 'baseline' for the baseline, '' otherwise."""
        if variant in self.references:
            return "reference"
        return "baseline" if variant == self.baseline else ""

    def last_reference(self, row: str) -> bool:
        """Whether a rule goes below ``row``: the last teacher stage's row."""
        return bool(self.references) and row == self.references[-1]

    def label(self, variant: str) -> str:
        """The row label, e.g. ``teacher (reference)`` or ``kd (baseline)``."""
        role = self.role(variant)
        return f"{variant} ({role})" if role else variant

    def caption(self) -> str:
        """What the cells mean, then the metric definitions from ``notes``."""
        spread = ("sample std" if self.level is None else
                  f"half-width of the {self.level * 100:g}% confidence interval (t-distribution, "
                  f"n - 1 degrees of freedom)")
        marked = ("; best per column marked" if self.compares else
                  "; the best cell marked" if self.grid else "")
        parts = [f"Mean ± {spread} over seeds (n = number of seeds){marked}; "
                 "↑ higher is better, ↓ lower is better"]
        if self.measured:
            parts[0] += f"; every column shows {self.measured}"
        if self.baseline:
            parts[0] += f"; Δ = difference of means to {self.baseline}"
        if self.baseline and self.alpha is not None:
            parts.append(f"Each Δ is tested by a paired t-test over the seeds the row shares "
                         f"with {self.baseline} (same seed: same data order and initialisation), "
                         f"two-sided: ns = not significant at p < {self.alpha:g}; n<{MIN_PAIRS} "
                         f"= fewer than {MIN_PAIRS} shared seeds, not tested")
        parts += [f"{metric}: {text.rstrip('.')}" for metric, text in self.notes.items()]
        if self.environment_note:
            parts.append(self.environment_note)
        return ". ".join(parts) + "."


def plain(text: str) -> str:
    return text


def header(column: str, metric: str | None = None) -> str:
    """A column's title with the direction of its metric (``metric``, default the column's own),
    e.g. ``top1 ↑``; a count has none."""
    metric = metric or column
    if is_count(metric):
        return column
    return f"{column} {'↓' if lower_is_better(metric) else '↑'}"


def titles(table: MethodTable, escape=plain) -> list[str]:
    """The column titles: each metric (with its direction, unless the rows are the metrics), and
    its difference to the baseline where there is one."""
    def title(column: str) -> str:
        return column if table.row_title == "metric" else header(column, table.metric_of(column))

    return [table.row_title] + [escape(t) for column in table.metrics
                                for t in (title(column), f"Δ {column}")[
                                    :2 if table.differs(column) else 1]]


def cell_text(cell: Cell | None, spread: float | None, strong=plain, escape=plain) -> str:
    """``74.12 ± 0.31 (n=3)`` (``spread``: the std or an interval's half-width); ``strong`` wraps
    the mean ± spread of a best cell, ``escape`` quotes text for the output format."""
    if cell is None:
        return escape(DASH)
    shown = DASH if spread is None else f"{spread:.2f}"
    return strong(escape(f"{cell.mean:.2f} ± {shown}")) + escape(f" (n={cell.n})")


def delta_text(delta: float | None, test: PairedTest | None = None,
               alpha: float | None = None) -> str:
    """``+1.23``; marked ``ns`` when its paired test is not significant at ``alpha``, ``n<3``
    when too few seeds are shared to test."""
    if delta is None:
        return DASH
    text = f"{delta:+.2f}"
    if test is not None and test.p is None:
        return f"{text} n<{MIN_PAIRS}"
    if test is not None and not test.significant(alpha):
        return f"{text} ns"
    return text


def text_rows(table: MethodTable, strong=plain, escape=plain) -> list[list[str]]:
    """The table body as strings: the label, then per metric the cell and the difference."""
    best = {metric: table.best(metric) for metric in table.metrics}
    rows = []
    for variant in table.shown:
        row = [escape(table.label(variant))]
        for metric in table.metrics:
            mark = strong if variant in best[metric] else plain
            cell = table.cell(variant, metric)
            row.append(cell_text(cell, table.spread(cell) if cell else None, mark, escape))
            if table.differs(metric):
                row.append(escape(delta_text(table.delta(variant, metric),
                                             table.test(variant, metric), table.alpha)))
        rows.append(row)
    return rows


def render_rich(table: MethodTable) -> Table:
    """A rich table for the terminal: best cells in bold with a ★, the teacher rows set apart."""
    out = Table(caption=markup_escape(table.caption()), caption_justify="left")
    for position, title in enumerate(titles(table, markup_escape)):
        out.add_column(title, justify="left" if position == 0 else "right")
    body = text_rows(table, strong=lambda text: f"[bold]{text} ★[/bold]", escape=markup_escape)
    for variant, row in zip(table.shown, body):
        out.add_row(*row, style="dim" if variant in table.references else None)
        if table.last_reference(variant):
            out.add_section()
    return out


def to_markdown(table: MethodTable) -> str:
    """A Markdown (pipe) table, best cells as ``**mean ± std** (n=k)``, the caption below."""
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    lines = [line(titles(table, escape)), "|---|" + "---:|" * (len(titles(table)) - 1)]
    lines += [line(row) for row in text_rows(table, lambda text: f"**{text}**", escape)]
    return "\n".join(lines) + f"\n\n{table.caption()}\n"


def to_latex(table: MethodTable) -> str:
    """A LaTeX table (needs ``booktabs``): best cells in ``\\textbf{}``, the caption with the
    notes, the teacher rows above a rule."""
    def line(cells: list[str]) -> str:
        return " & ".join(cells) + r" \\"

    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex(table.caption())}}}",
             rf"\begin{{tabular}}{{l{'r' * (len(titles(table)) - 1)}}}", r"\toprule",
             line(titles(table, latex)), r"\midrule"]
    body = text_rows(table, strong=lambda text: rf"\textbf{{{text}}}", escape=latex)
    for variant, row in zip(table.shown, body):
        lines.append(line(row))
        if table.last_reference(variant):
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(table: MethodTable) -> str:
    """An HTML ``<table>`` (no scripts, no outside resources): best cells in ``<strong>``, the
    teacher rows apart (class ``reference``), the caption below."""
    from html import escape

    def row(cells: list[str], tag: str = "td", css: str = "") -> str:
        attribute = f' class="{css}"' if css else ""
        return f"<tr{attribute}>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"

    lines = ['<table class="method-table">', "<thead>" + row(titles(table, escape), "th")
             + "</thead>", "<tbody>"]
    body = text_rows(table, strong=lambda text: f"<strong>{text}</strong>", escape=escape)
    for variant, cells in zip(table.shown, body):
        lines.append(row(cells, css="reference" if variant in table.references else ""))
    lines += ["</tbody>", f"<caption>{escape(table.caption())}</caption>", "</table>"]
    return "\n".join(lines) + "\n"


LATEX_REPLACEMENTS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "—": "--",
}


def latex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and the table's symbols as math."""
    return "".join(LATEX_REPLACEMENTS.get(char, char) for char in text)


def number(value: float | None) -> float | None:
    """``value`` for machine-readable output: None for missing, NaN or infinite."""
    return None if value is None or not math.isfinite(value) else value


def record_fields(table: MethodTable) -> tuple[str, ...]:
    """The numbers of each metric in machine-readable output: mean, std, n, best, delta, and
    with the statistics asked for, ``ci`` (the interval's half-width) and the paired test's
    ``pairs``, ``t``, ``p`` and ``significant``."""
    return (("mean", "std", "n", "best", "delta") + (("ci",) if table.level is not None else ())
            + (("pairs", "t", "p", "significant") if table.alpha is not None else ()))


def records(table: MethodTable) -> list[dict]:
    """One record per row, full precision: variant, role, and per metric a dict of
    :func:`record_fields`."""
    out = []
    for variant in table.shown:
        record = {"variant": variant, "role": table.role(variant)}
        for metric in table.metrics:
            cell = table.cell(variant, metric)
            test = table.test(variant, metric)
            values = {
                "mean": number(cell.mean) if cell else None,
                "std": number(cell.std) if cell else None,
                "n": cell.n if cell else 0,
                "best": variant in table.best(metric),
                "delta": number(table.delta(variant, metric)),
                "ci": number(table.spread(cell)) if cell and table.level is not None else None,
                "pairs": test.n if test else None,
                "t": number(test.t) if test and test.t is not None else None,
                "p": number(test.p) if test and test.p is not None else None,
                "significant": test.significant(table.alpha) if test else None,
            }
            record[metric] = {name: values[name] for name in record_fields(table)}
        if table.environments:
            record["environments"] = {str(seed): env for seed, env
                                      in table.environments.get(variant, {}).items()}
        out.append(record)
    return out


def to_json(table: MethodTable) -> str:
    """``{"metrics", "baseline", "notes", "rows"}`` (and ``level``, ``alpha`` when set,
    ``environment_note`` when the rows' environments differ); each row holds per metric the
    numbers of :func:`record_fields` (null where missing, e.g. the std of one seed) and, for
    an experiment's table, ``environments``: per seed its run's environment (null: unknown)."""
    document = {"metrics": table.metrics, "baseline": table.baseline, "notes": table.notes,
                "rows": records(table)}
    if table.environment_note:
        document["environment_note"] = table.environment_note
    document.update({k: v for k, v in (("level", table.level), ("alpha", table.alpha),
                                       ("measured", table.measured)) if v is not None})
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def to_csv(table: MethodTable) -> str:
    """One line per row: ``variant, role``, then ``<metric>_<field>`` for the :func:`record_fields` of
    each metric (``is_best`` for best), full precision (empty when missing)."""
    names = record_fields(table)
    column = {"best": "is_best"}  # so that e.g. top1's flag is not read as the metric top1_best
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["variant", "role"] + [f"{m}_{column.get(f, f)}" for m in table.metrics
                                           for f in names])
    for record in records(table):
        values = [record[metric][f] for metric in table.metrics for f in names]
        writer.writerow([record["variant"], record["role"]] + ["" if v is None else v
                                                               for v in values])
    return buffer.getvalue()
