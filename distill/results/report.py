"""``distill compare``: the method table of one experiment folder, or of every experiment in an
output root, in the format asked for."""
from __future__ import annotations

import json
from pathlib import Path

from distill.continual.accuracy_matrix import metric_notes
from distill.errors import UserError
from distill.results.store import ResultsStore
from distill.results.table import (MethodTable, render_rich, to_csv, to_json, to_latex,
                                   to_markdown)

# what a terminal shows when a kind's columns do not fit (retrieval, generation)
TERMINAL_SUMMARIES = (("i2t_r1", "t2i_r1", "rsum", "latency_i2t_us", "latency_t2i_us"),
                      ("answer_acc", "rationales_kept", "negatives_teacher", "negatives_student"))
RENDER = {"table": render_rich, "md": to_markdown, "csv": to_csv, "json": to_json,
          "latex": to_latex}
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


def _variant_order(exp_dir: Path) -> list[str] | None:
    """Variants in the order of the experiment file kept beside the runs, when there is one."""
    from distill.config.yaml_lines import load_yaml

    source = exp_dir / "experiment.yaml"
    if not source.is_file():
        return None
    try:
        data = load_yaml(source).data
    except UserError:  # the order is a nicety; a damaged copy does not stop the table
        return None
    variants = (data.get("variants") if isinstance(data, dict) else None) or {}
    return list(variants) if isinstance(variants, dict) else None


def comparison(target: Path, fmt: str = "table", metrics: list[str] | None = None,
               baseline: str | None = None, order: list[str] | None = None,
               baseline_if_present: bool = False, level: float | None = None,
               alpha: float | None = None):
    """The rendered table(s): a rich Table for ``table``, text for the other formats.
    ``baseline_if_present``: fall back to the default baseline when ``baseline`` has no results
    (after a run of some variants only); ``level``, ``alpha``: the statistics of
    :meth:`MethodTable.from_rows`."""
    store, experiments = _locate(target)
    if not experiments:
        raise UserError(f"{target}: the results store holds no results yet; run an experiment "
                        f"with `distill run FILE --out {target}` first")
    rendered = []
    for name in experiments:
        rows = store.rows(name)
        if not rows:
            raise UserError(f"{target}: no results for experiment {name!r}; run it first")
        exp_dir = target if target.name == name else target / name
        if baseline_if_present and baseline not in {row["variant"] for row in rows}:
            baseline = None
        shown = metrics
        available = {row["metric"] for row in rows}
        summary = next((s for s in TERMINAL_SUMMARIES if set(s) <= available), None)
        if fmt == "table" and not metrics and summary is not None:
            shown = list(summary)
        table = MethodTable.from_rows(rows, shown, baseline, order or _variant_order(exp_dir),
                                      notes=METRIC_NOTES, level=level, alpha=alpha)
        rendered.append((name, RENDER[fmt](table)))
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
