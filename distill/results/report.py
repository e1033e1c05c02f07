"""``distill compare``: the method table of one experiment folder, or of every experiment in an
output root, in the format asked for."""
from __future__ import annotations

import json
from pathlib import Path

from distill.continual.accuracy_matrix import metric_notes
from distill.errors import UserError
from distill.results.environments import attach as attach_environments
from distill.results.store import ResultsStore
from distill.registry import nearest
from distill.results.table import (MethodTable, metric_order, render_rich, to_csv, to_html,
                                   to_json, to_latex, to_markdown)

# what a terminal shows when a kind's columns do not fit (retrieval, generation)
TERMINAL_SUMMARIES = (("i2t_r1", "t2i_r1", "rsum", "latency_i2t_us", "latency_t2i_us"),
                      ("answer_acc", "rationales_kept", "negatives_teacher", "negatives_student"))
RENDER = {"table": render_rich, "md": to_markdown, "csv": to_csv, "json": to_json,
          "latex": to_latex, "html": to_html}
METRIC_NOTES = {
    "top1": "test accuracy (%) at the final epoch",
    "top1_best": "best test accuracy (%) over epochs (the RepDistiller convention)",
    "probe_student": "linear-probe test accuracy (%) on the student's standardised frozen features",
    "probe_teacher": "linear-probe test accuracy (%) on the teacher's standardised frozen features",
    "probe_raw": "linear-probe test accuracy (%) on the standardised raw input",
    "knn_student": "k-NN test accuracy (%), cosine similarity, majority vote, on the student's "
                   "features",
    "knn_teacher": "k-NN test accuracy (%), cosine similarity, majority vote, on the teacher's "
                   "features",
    "knn_raw": "k-NN test accuracy (%), cosine similarity, majority vote, on the raw input",
    **metric_notes(),  # continual learning: til_/cil_ avg_acc, avg_inc_acc, forgetting, bwt
    **{f"{d}_r{k}": f"{'image -> text' if d == 'i2t' else 'text -> image'} R@{k}: % of test "
                    f"queries with a relevant item among the top {k} of the whole gallery"
       for d in ("i2t", "t2i") for k in (1, 5, 10)},
    "rsum": "the sum of the six R@K at the final epoch",
    "rsum_best": "the best RSUM over epochs",
    "answer_acc": "answer accuracy (%) of the predict: task at the final epoch: the greedy "
                  "decoding equals the gold label (an equation label: has its value)",
    "answer_acc_best": "the best answer accuracy (%) over epochs",
    "rationales_sampled": "teacher rationales sampled (or given by the data) over the training set",
    "rationales_kept": "teacher rationales that passed self-consistency (the positives)",
    "problems_without_positive": "training problems left without a positive rationale (their "
                                 "rationale terms skipped)",
    "negatives_teacher": "teacher rationales that failed self-consistency, used as negatives",
    "negatives_student": "negatives drawn from the student k rounds back, over the whole training",
    "latency_i2t_us": "microseconds per image query: encoding it and ranking the caption gallery "
                      "(a cross encoder also re-scores its top candidates jointly)",
    "latency_t2i_us": "microseconds per caption query, likewise against the image gallery",
}


def _locate(target: Path) -> tuple[ResultsStore, list[str]]:
    """The store and the experiments that ``target`` (an output root or runs/<name>) covers."""
    if (target / "results.sqlite").exists():
        store = ResultsStore(target / "results.sqlite")
        return store, store.experiments()
    if (target.parent / "results.sqlite").exists():
        return ResultsStore(target.parent / "results.sqlite"), [target.name]
    raise UserError(f"{target}: no results.sqlite here or in its parent; give the output root "
                    f"(runs) or an experiment folder (runs/<name>) made by `distill run`")


def kept_file(exp_dir: Path) -> dict:
    """The experiment file kept beside the runs, as data ({} when absent or damaged: the order
    and the sweep's grid are niceties that do not stop the table)."""
    from distill.config.yaml_lines import load_yaml

    source = exp_dir / "experiment.yaml"
    if not source.is_file():
        return {}
    try:
        data = load_yaml(source).data
    except UserError:
        return {}
    return data if isinstance(data, dict) else {}


def kept_sweep(exp_dir: Path) -> dict[str, list]:
    """The sweep the runs were made with: the kept file's ``sweep:`` and the ``--sweep``
    options in source.json."""
    from distill.config.sweep import parse_sweep_option

    sweep = kept_file(exp_dir).get("sweep")
    sweep = dict(sweep) if isinstance(sweep, dict) else {}
    try:
        options = json.loads((exp_dir / "source.json").read_text(encoding="utf-8"))["sweeps"]
        for option in options:
            key, values = parse_sweep_option(option)
            sweep[key] = values
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UserError):
        pass  # a damaged source.json: the grid is a nicety
    return {k: v for k, v in sweep.items() if isinstance(v, list)}


def variant_order(exp_dir: Path) -> list[str] | None:
    """Variants in the order of the experiment file kept beside the runs (its sweep's after its
    own), when there is one."""
    from distill.config.sweep import combinations

    data = kept_file(exp_dir)
    if not data:
        return None
    variants = data.get("variants") or {}
    own = list(variants) if isinstance(variants, dict) else []
    return own + [name for name, _ in combinations(kept_sweep(exp_dir))]


def sweep_grid(rows: list[dict], sweep: dict[str, list], metric: str, level: float | None
               ) -> MethodTable | None:
    """A two-key sweep as a grid of ``metric``: the first key's values down, the second's
    across, the best cell of the grid marked; None for other sweeps or without results."""
    from distill.config.sweep import combinations, label_of, value_text

    if len(sweep) != 2:
        return None
    first, second = sweep
    down, across = label_of(first, list(sweep)), label_of(second, list(sweep))
    where = dict(combinations(sweep))
    pseudo = [{**row, "variant": f"{down} = {value_text(where[row['variant']][first])}",
               "metric": value_text(where[row["variant"]][second])}
              for row in rows if row["variant"] in where and row["metric"] == metric]
    if not pseudo:
        return None
    order = [f"{down} = {value_text(v)}" for v in sweep[first]]
    columns = [value_text(v) for v in sweep[second]]
    return MethodTable.from_rows(
        pseudo, [c for c in columns if any(r["metric"] == c for r in pseudo)], None, order,
        notes=METRIC_NOTES, level=level, measured=metric, compares=False, grid=True,
        row_title=f"{metric}: {down} \\ {across}")


DIMENSIONS = ("variant", "experiment", "metric", "task")


def task_label(task: int) -> str:
    return "final" if task < 0 else f"task {task + 1}"


def pivoted(rows: list[dict], by_row: str, by_column: str, metrics: list[str] | None,
            order: dict[str, list[str]], baseline: str | None, level: float | None,
            alpha: float | None) -> list[tuple[str, MethodTable]]:
    """Tables of ``by_row`` x ``by_column`` (two of :data:`DIMENSIONS`) over the store's
    ``rows`` of several experiments, e.g. the method x setting table of KD papers (variants
    matched by name across experiments). The dimensions left out: ``metric`` is the one given
    (default the first in display order), ``task`` the final one, and ``experiment`` or
    ``variant`` give one table per value. Rows of variants compare (baseline, differences, best,
    teachers as references); other rows do not. ``order``: the display order of each
    dimension's values."""
    if "metric" in (by_row, by_column):
        wanted = set(metrics) if metrics else None
    else:
        available = sorted({row["metric"] for row in rows}, key=metric_order)
        if metrics and len(metrics) > 1:
            raise UserError(f"a table of {by_row} x {by_column} shows one metric; give one "
                            f"--metric (available: {', '.join(available)})")
        measured = metrics[0] if metrics else "top1" if "top1" in available else available[0]
        if measured not in available:
            raise UserError(f"no metric {measured!r} in the results"
                            f"{nearest(measured, available)}; available: {', '.join(available)}")
        wanted = {measured}
    if "task" not in (by_row, by_column):  # each (experiment, variant, seed, metric) at its end
        final = {}
        for row in rows:
            key = (row["experiment"], row["variant"], row["seed"], row["metric"])
            if key not in final or row["task"] > final[key]["task"]:
                final[key] = row
        rows = list(final.values())
    split = [d for d in ("experiment", "variant") if d not in (by_row, by_column)]
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if wanted is not None and row["metric"] not in wanted:
            continue
        label = {d: task_label(row[d]) if d == "task" else str(row[d]) for d in DIMENSIONS}
        title = " / ".join(label[d] for d in split) or "all experiments"
        groups.setdefault(title, []).append({
            "experiment": title, "variant": label[by_row], "metric": label[by_column],
            "seed": row["seed"], "task": -1, "value": row["value"]})
    if not groups:
        raise UserError("no results for that metric; run the experiments first")
    tables = []
    for title, pseudo in groups.items():
        columns = {row["metric"] for row in pseudo}
        shown = [c for c in order.get(by_column, []) if c in columns]
        shown += sorted(columns - set(shown))
        table = MethodTable.from_rows(
            pseudo, shown, baseline if by_row == "variant" else None, order.get(by_row),
            notes=METRIC_NOTES, level=level, alpha=alpha,
            measured=None if "metric" in (by_row, by_column) else next(iter(wanted)),
            compares=by_row == "variant", row_title=by_row)
        tables.append((title, table))
    return tables


def comparison(target: Path, fmt: str = "table", metrics: list[str] | None = None,
               baseline: str | None = None, order: list[str] | None = None,
               baseline_if_present: bool = False, level: float | None = None,
               alpha: float | None = None, by_row: str = "variant",
               by_column: str = "metric"):
    """The rendered table(s): a rich Table for ``table``, text for the other formats.
    ``baseline_if_present``: fall back to the default baseline when ``baseline`` has no results
    (after a run of some variants only); ``level``, ``alpha``: the statistics of
    :meth:`MethodTable.from_rows`; ``by_row`` x ``by_column``: variant x metric per experiment,
    or any other two of :data:`DIMENSIONS` (:func:`pivoted`)."""
    store, experiments = _locate(target)
    if not experiments:
        raise UserError(f"{target}: the results store holds no results yet; run an experiment "
                        f"with `distill run FILE --out {target}` first")
    if by_row == by_column:
        raise UserError(f"--rows and --columns are both {by_row}; give two of "
                        f"{', '.join(DIMENSIONS)}")
    rows_of = {}
    for name in experiments:
        rows_of[name] = store.rows(name)
        if not rows_of[name]:
            raise UserError(f"{target}: no results for experiment {name!r}; run it first")
    folder = {name: target if target.name == name else target / name for name in experiments}
    if (by_row, by_column) == ("variant", "metric"):
        tables = []
        for name in experiments:
            table = method_table(rows_of[name], fmt, metrics, baseline,
                                 order or variant_order(folder[name]), baseline_if_present,
                                 level, alpha)
            tables.append((name, attach_environments(table, folder[name])))
            grid = (sweep_grid(rows_of[name], kept_sweep(folder[name]), table.metrics[0], level)
                    if fmt in ("table", "md", "html") else None)  # one table per CSV or JSON
            if grid is not None:
                tables.append((f"{name}: the sweep", grid))
    else:
        every = [row for name in experiments for row in rows_of[name]]
        variants = list(order or [])
        for name in experiments:
            variants += [v for v in variant_order(folder[name]) or [] if v not in variants]
        tasks = sorted({row["task"] for row in every})
        dimension_order = {
            "variant": variants, "experiment": list(experiments),
            "metric": sorted({row["metric"] for row in every}, key=metric_order),
            "task": [task_label(t) for t in tasks]}
        tables = pivoted(every, by_row, by_column, metrics, dimension_order, baseline, level,
                         alpha)
    rendered = [(name, RENDER[fmt](table)) for name, table in tables]
    if fmt == "table":
        from rich.console import Group
        for name, t in rendered:
            t.title = name
        return Group(*(t for _, t in rendered))
    if fmt == "json" and len(rendered) > 1:
        return json.dumps({name: json.loads(text) for name, text in rendered}, indent=2)
    if len(rendered) == 1:
        return rendered[0][1]
    return "\n\n".join(f"{name}\n\n{text}" for name, text in rendered)


def method_table(rows: list[dict], fmt: str, metrics: list[str] | None, baseline: str | None,
                 order: list[str] | None, baseline_if_present: bool, level: float | None,
                 alpha: float | None) -> MethodTable:
    """One experiment's variant x metric table (a terminal shows a kind's summary columns)."""
    if baseline_if_present and baseline not in {row["variant"] for row in rows}:
        baseline = None
    shown = metrics
    available = {row["metric"] for row in rows}
    summary = next((s for s in TERMINAL_SUMMARIES if set(s) <= available), None)
    if fmt == "table" and not metrics and summary is not None:
        shown = list(summary)
    return MethodTable.from_rows(rows, shown, baseline, order, notes=METRIC_NOTES, level=level,
                                 alpha=alpha)
