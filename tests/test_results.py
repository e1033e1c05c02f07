"""The results store (round trip, replacement, concurrent writers, missing store) and the method
table (statistics, best, baseline, teacher, continual, every output format)."""
import csv
import io
import json
import math
import multiprocessing

import numpy as np
import pytest
from rich.console import Console

from distill.errors import UserError
from distill.results import MethodTable, ResultsStore
from distill.results.table import (lower_is_better, render_rich, to_csv, to_json, to_latex,
                                   to_markdown)

# variant -> metric -> one value per seed (seeds 0, 1, ...)
HAND = {
    "kd": {"top1": [70.1, 71.3, 70.7], "test_loss": [1.10, 1.05, 1.20]},
    "crd": {"top1": [72.0, 71.5, 72.9], "test_loss": [1.00, 0.98, 1.10]},
    "fitnet": {"top1": [69.0], "test_loss": [0.90]},
    "teacher": {"top1": [78.0, 77.6], "test_loss": [0.50, 0.60]},
}
NOTES = {"top1": "test accuracy at the final epoch", "test_loss": "cross-entropy on the test set"}


def hand_rows(experiment="cifar_kd"):
    return [{"experiment": experiment, "variant": variant, "seed": seed, "task": -1,
             "metric": metric, "value": value, "recorded_at": "2024-01-01T00:00:00+00:00"}
            for variant, metrics in HAND.items() for metric, values in metrics.items()
            for seed, value in enumerate(values)]


def hand_table(**options):
    return MethodTable.from_rows(hand_rows(), order=["kd", "crd", "fitnet"], notes=NOTES,
                                 **options)


def mean(variant, metric):
    return float(np.mean(HAND[variant][metric]))


def std(variant, metric):
    return float(np.std(HAND[variant][metric], ddof=1))


# --- store -------------------------------------------------------------------------------------

def test_rows_round_trip(tmp_path):
    store = ResultsStore(tmp_path / "runs" / "results.sqlite")
    store.record("b_exp", "kd", 0, {"top1": 71.5, "top1_best": 72.0})
    store.record("a_exp", "crd", 1, {"acc": 0.5}, task=2)
    rows = store.rows()
    assert [{k: v for k, v in row.items() if k != "recorded_at"} for row in rows] == [
        {"experiment": "a_exp", "variant": "crd", "seed": 1, "task": 2, "metric": "acc",
         "value": 0.5},
        {"experiment": "b_exp", "variant": "kd", "seed": 0, "task": -1, "metric": "top1",
         "value": 71.5},
        {"experiment": "b_exp", "variant": "kd", "seed": 0, "task": -1, "metric": "top1_best",
         "value": 72.0},
    ]
    assert all(row["recorded_at"].startswith("20") for row in rows)
    assert [row["metric"] for row in store.rows("b_exp")] == ["top1", "top1_best"]
    assert store.rows("none") == []
    assert store.experiments() == ["a_exp", "b_exp"]


def test_nan_comes_back_as_nan(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    store.record("e", "kd", 0, {"loss": math.nan})
    assert math.isnan(store.rows()[0]["value"])


def test_record_replaces_the_same_key_only(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    store.record("e", "kd", 0, {"top1": 1.0, "loss": 3.0})
    store.record("e", "kd", 0, {"top1": 2.0})
    store.record("e", "kd", 0, {"top1": 5.0}, task=0)
    values = {(row["task"], row["metric"]): row["value"] for row in store.rows()}
    assert values == {(-1, "loss"): 3.0, (-1, "top1"): 2.0, (0, "top1"): 5.0}


def test_delete_removes_one_run(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    store.record("e", "kd", 0, {"top1": 1.0, "loss": 3.0})
    store.record("e", "kd", 0, {"top1": 1.5}, task=1)
    store.record("e", "kd", 1, {"top1": 2.0})
    store.record("e", "crd", 0, {"top1": 3.0})
    assert store.delete("e", "kd", 0) == 3
    assert {(row["variant"], row["seed"]) for row in store.rows()} == {("kd", 1), ("crd", 0)}


def write_rows(path, variant, start):
    """Run in a child process: 200 single-row transactions after both writers are ready."""
    store = ResultsStore(path)
    start.wait()
    for seed in range(200):
        store.record("concurrent", variant, seed, {"top1": float(seed)})


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "runs" / "results.sqlite"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    writers = [context.Process(target=write_rows, args=(path, variant, start))
               for variant in ("kd", "crd")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert [writer.exitcode for writer in writers] == [0, 0]
    rows = ResultsStore(path).rows("concurrent")
    assert len(rows) == 400
    assert {(row["variant"], row["seed"]) for row in rows} == {
        (variant, seed) for variant in ("kd", "crd") for seed in range(200)}


@pytest.mark.parametrize("read", [lambda s: s.rows(), lambda s: s.experiments(),
                                  lambda s: s.delete("e", "kd", 0)])
def test_missing_store_is_a_user_error_and_is_not_created(tmp_path, read):
    path = tmp_path / "runs" / "results.sqlite"
    with pytest.raises(UserError, match="distill run") as raised:
        read(ResultsStore(path))
    assert str(path) in str(raised.value)
    assert not path.parent.exists()


def test_a_file_that_is_not_a_store_is_a_user_error(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_text("not a database, just text " * 100)
    with pytest.raises(UserError, match="not a results store"):
        ResultsStore(path).rows()


# --- table -------------------------------------------------------------------------------------

def test_means_and_stds_equal_numpy():
    table = hand_table()
    for variant, metrics in HAND.items():
        for metric, values in metrics.items():
            cell = table.cell(variant, metric)
            assert cell.n == len(values)
            assert cell.mean == pytest.approx(np.mean(values))
            if len(values) > 1:
                assert cell.std == pytest.approx(np.std(values, ddof=1))
            else:
                assert cell.std is None


def test_best_per_column_with_lower_is_better_and_never_the_teacher():
    table = hand_table()
    assert table.best("top1") == {"crd"}  # the teacher's 77.8 is higher but not compared
    assert table.best("test_loss") == {"fitnet"}  # lower is better; the teacher's is lower still


@pytest.mark.parametrize("metric, lower", [
    ("top1", False), ("top1_best", False), ("bwt", False), ("avg_acc", False),
    ("forgetting", True), ("test_loss", True), ("error_rate", True), ("latency_ms", True)])
def test_direction_of_metrics(metric, lower):
    assert lower_is_better(metric) is lower


def test_baseline_and_differences():
    table = hand_table()
    assert table.baseline == "kd"  # first in `order`
    assert table.variants == ["kd", "crd", "fitnet"]
    assert table.shown == ["teacher", "kd", "crd", "fitnet"]
    assert table.delta("kd", "top1") is None
    assert table.delta("crd", "top1") == pytest.approx(mean("crd", "top1") - mean("kd", "top1"))
    assert table.delta("teacher", "test_loss") == pytest.approx(
        mean("teacher", "test_loss") - mean("kd", "test_loss"))
    assert table.label("teacher") == "teacher (reference)"
    assert table.label("kd") == "kd (baseline)"
    alphabetical = MethodTable.from_rows(hand_rows())
    assert alphabetical.baseline == "crd" and alphabetical.variants == ["crd", "fitnet", "kd"]
    assert hand_table(baseline="fitnet").delta("kd", "top1") == pytest.approx(
        mean("kd", "top1") - mean("fitnet", "top1"))


def test_teacher_is_never_the_baseline():
    only_teacher_first = MethodTable.from_rows(hand_rows(), order=["teacher", "fitnet"])
    assert only_teacher_first.baseline == "fitnet"
    with pytest.raises(UserError, match="reference"):
        hand_table(baseline="teacher")
    with pytest.raises(UserError, match="did you mean 'crd'"):
        hand_table(baseline="crdd")


def test_metric_selection():
    assert hand_table(metrics=["top1"]).metrics == ["top1"]
    assert hand_table().metrics == ["test_loss", "top1"]
    with pytest.raises(UserError, match="top5"):
        hand_table(metrics=["top5"])
    with pytest.raises(UserError, match="no results"):
        MethodTable.from_rows([])


def test_continual_rows_use_the_final_task():
    rows = [{"experiment": "cl", "variant": "lwf", "seed": seed, "task": task, "metric": "avg_acc",
             "value": 10.0 * task + seed} for seed in (0, 1) for task in (2, 0, 1)]
    cell = MethodTable.from_rows(rows).cell("lwf", "avg_acc")
    assert cell.values == (20.0, 21.0)


# --- renderers ---------------------------------------------------------------------------------

def text(variant, metric):
    return f"{mean(variant, metric):.2f} ± {std(variant, metric):.2f}"


def test_markdown():
    markdown = to_markdown(hand_table())
    lines = markdown.splitlines()
    assert lines[0] == "| variant | test_loss ↓ | Δ test_loss | top1 ↑ | Δ top1 |"
    assert lines[2].startswith("| teacher (reference) |")
    assert f"**{text('crd', 'top1')}** (n=3)" in markdown
    assert f"| {text('kd', 'top1')} (n=3) | — |" in markdown
    assert "**0.90 ± —** (n=1)" in markdown  # fitnet's loss: best, one seed
    assert "| 69.00 ± — (n=1) |" in markdown
    assert f"{mean('crd', 'top1') - mean('kd', 'top1'):+.2f}" in markdown
    assert "top1: test accuracy at the final epoch" in lines[-1]


def test_csv_parses_back():
    records = list(csv.DictReader(io.StringIO(to_csv(hand_table()))))
    assert [r["variant"] for r in records] == ["teacher", "kd", "crd", "fitnet"]
    assert [r["role"] for r in records] == ["reference", "baseline", "", ""]
    by_variant = {r["variant"]: r for r in records}
    for variant, metrics in HAND.items():
        for metric, values in metrics.items():
            record = by_variant[variant]
            assert float(record[f"{metric}_mean"]) == pytest.approx(np.mean(values))
            assert int(record[f"{metric}_n"]) == len(values)
            expected_std = std(variant, metric) if len(values) > 1 else None
            assert (float(record[f"{metric}_std"]) if record[f"{metric}_std"] else None) == (
                pytest.approx(expected_std) if expected_std is not None else None)
    assert by_variant["crd"]["top1_is_best"] == "True"
    assert by_variant["teacher"]["top1_is_best"] == "False"
    assert float(by_variant["crd"]["top1_delta"]) == pytest.approx(
        mean("crd", "top1") - mean("kd", "top1"))
    assert by_variant["kd"]["top1_delta"] == ""


def test_json_parses_back():
    document = json.loads(to_json(hand_table()))
    assert document["notes"] == NOTES
    assert document["baseline"] == "kd"
    assert document["metrics"] == ["test_loss", "top1"]
    rows = {row["variant"]: row for row in document["rows"]}
    assert rows["crd"]["top1"]["mean"] == pytest.approx(mean("crd", "top1"))
    assert rows["crd"]["top1"]["std"] == pytest.approx(std("crd", "top1"))
    assert rows["crd"]["top1"]["best"] is True
    assert rows["fitnet"]["test_loss"] == {"mean": 0.9, "std": None, "n": 1, "best": True,
                                           "delta": pytest.approx(0.9 - mean("kd", "test_loss"))}
    assert rows["teacher"]["role"] == "reference" and rows["teacher"]["top1"]["best"] is False


def test_latex():
    latex = to_latex(hand_table())
    crd = text("crd", "top1").replace("±", r"$\pm$")
    assert rf"\textbf{{{crd}}} (n=3)" in latex
    assert r"\textbf{0.90 $\pm$ --} (n=1)" in latex
    assert r"\caption{" in latex and r"test\_loss: cross-entropy on the test set" in latex
    assert r"teacher (reference) &" in latex
    assert latex.count(r"\midrule") == 2  # below the header and below the teacher


def test_rich():
    console = Console(record=True, width=200, color_system=None)
    console.print(render_rich(hand_table()))
    shown = console.export_text()
    assert f"{text('crd', 'top1')} ★ (n=3)" in shown
    assert f"{text('kd', 'top1')} (n=3)" in shown
    teacher_line = next(line for line in shown.splitlines() if "teacher (reference)" in line)
    assert "★" not in teacher_line
    assert "top1: test accuracy at the final epoch" in " ".join(shown.split())


def test_retrieval_columns_come_in_the_papers_order_and_the_terminal_shows_a_summary(tmp_path):
    from distill.results.report import TERMINAL_SUMMARIES, comparison
    TERMINAL_SUMMARY = TERMINAL_SUMMARIES[0]

    store = ResultsStore(tmp_path / "results.sqlite")
    metrics = {f"{d}_r{k}": 50.0 + k for d in ("t2i", "i2t") for k in (10, 5, 1)}
    metrics.update(rsum=400.0, rsum_best=410.0, latency_t2i_us=20.0, latency_i2t_us=15.0)
    for variant in ("contrastive", "dcd"):
        store.record("ret", variant, 0, metrics)
    md = comparison(tmp_path / "ret", "md")
    header = md.splitlines()[0]
    order = [header.index(f"| {m} ") for m in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5",
                                                "t2i_r10", "rsum", "rsum_best", "latency_i2t_us",
                                                "latency_t2i_us")]
    assert order == sorted(order)
    assert "microseconds per image query" in md
    table = MethodTable.from_rows(store.rows("ret"), list(TERMINAL_SUMMARY))
    assert table.metrics == list(TERMINAL_SUMMARY)
    rich = comparison(tmp_path / "ret", "table")
    console = Console(width=200, record=True)
    console.print(rich)
    shown = console.export_text()
    assert "latency_i2t_us" in shown and "i2t_r5" not in shown
