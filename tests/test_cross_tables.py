"""Tables across experiments (`distill compare runs/ --rows R --columns C`): the method x setting
table of KD papers, with variants matched by name, the teacher and baseline rows, and the other
pivots, checked on hand-written results."""
from __future__ import annotations

import json

import numpy as np
import pytest

from distill.cli import main
from distill.results import ResultsStore

# experiment -> variant -> seed -> (top1, top1_best)
HAND = {
    "mnist1d": {"ce": {0: (88.0, 88.5), 1: (89.0, 89.1), 2: (88.5, 88.9)},
                "kd": {0: (90.0, 90.2), 1: (91.0, 91.5), 2: (90.4, 90.6)},
                "teacher": {0: (92.0, 92.3)}},
    "digits": {"ce": {0: (95.0, 95.5), 1: (96.0, 96.1), 2: (95.5, 95.6)},
               "kd": {0: (96.0, 96.4), 1: (96.5, 96.9), 2: (96.1, 96.2)},
               "nd": {0: (97.0, 97.1)},
               "teacher": {0: (98.0, 98.0)}},
}


@pytest.fixture
def runs(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    for experiment, variants in HAND.items():
        (tmp_path / experiment).mkdir()
        (tmp_path / experiment / "experiment.yaml").write_text(
            "variants: {ce: {}, kd: {}, nd: {}}\n")
        for variant, seeds in variants.items():
            for seed, (top1, best) in seeds.items():
                store.record(experiment, variant, seed, {"top1": top1, "top1_best": best})
    return tmp_path


def table(runs, capsys, *args) -> dict:
    assert main(["compare", str(runs), "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def mean(experiment, variant, metric=0):
    return float(np.mean([v[metric] for v in HAND[experiment][variant].values()]))


def test_variants_by_experiments_is_the_papers_table(runs, capsys):
    doc = table(runs, capsys, "--columns", "experiment", "--baseline", "ce")
    assert doc["metrics"] == ["digits", "mnist1d"]  # the store's order: by name
    rows = {row["variant"]: row for row in doc["rows"]}
    assert [row["variant"] for row in doc["rows"]] == ["teacher", "ce", "kd", "nd"]
    for experiment in HAND:
        assert rows["kd"][experiment]["mean"] == pytest.approx(mean(experiment, "kd"))
        assert rows["kd"][experiment]["delta"] == pytest.approx(
            mean(experiment, "kd") - mean(experiment, "ce"))
        assert rows["teacher"][experiment]["mean"] == HAND[experiment]["teacher"][0][0]
    assert rows["kd"]["mnist1d"]["best"] and rows["nd"]["digits"]["best"]  # best per column
    assert not rows["teacher"]["digits"]["best"] and not rows["kd"]["digits"]["best"]
    assert rows["teacher"]["role"] == "reference" and rows["ce"]["role"] == "baseline"
    assert rows["nd"]["mnist1d"]["n"] == 0 and rows["nd"]["digits"]["n"] == 1
    assert doc["baseline"] == "ce"
    assert main(["compare", str(runs), "--format", "md", "--columns", "experiment"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "| variant | digits ↑ | Δ digits | mnist1d ↑ | Δ mnist1d |"
    assert "every column shows top1" in text


def test_the_metric_of_a_cross_table_is_the_one_asked_for(runs, capsys):
    doc = table(runs, capsys, "--columns", "experiment", "--metric", "top1_best")
    kd = next(row for row in doc["rows"] if row["variant"] == "kd")
    assert kd["digits"]["mean"] == pytest.approx(mean("digits", "kd", 1))
    assert main(["compare", str(runs), "--columns", "experiment", "--metric", "top1",
                 "--metric", "top1_best"]) == 2
    assert "one --metric" in capsys.readouterr().err
    assert main(["compare", str(runs), "--columns", "experiment", "--metric", "top5"]) == 2
    assert "top5" in capsys.readouterr().err


def test_a_cross_table_tests_each_column_over_its_own_pairs(runs, capsys):
    doc = table(runs, capsys, "--columns", "experiment", "--paired")
    kd = next(row for row in doc["rows"] if row["variant"] == "kd")
    from scipy import stats
    for experiment in HAND:
        reference = stats.ttest_rel([HAND[experiment]["kd"][s][0] for s in range(3)],
                                    [HAND[experiment]["ce"][s][0] for s in range(3)])
        assert kd[experiment]["p"] == pytest.approx(reference.pvalue)
    nd = next(row for row in doc["rows"] if row["variant"] == "nd")
    assert nd["digits"]["pairs"] == 1 and nd["digits"]["p"] is None


def test_experiments_by_metrics_is_one_table_per_variant(runs, capsys):
    doc = table(runs, capsys, "--rows", "experiment", "--columns", "metric")
    assert set(doc) == {"teacher", "ce", "kd", "nd"}
    kd = {row["variant"]: row for row in doc["kd"]["rows"]}
    assert kd["digits"]["top1_best"]["mean"] == pytest.approx(mean("digits", "kd", 1))
    assert doc["kd"]["baseline"] is None and not kd["digits"]["top1"]["best"]  # no comparing
    assert kd["digits"]["top1"]["delta"] is None


def test_rows_and_columns_must_differ(runs, capsys):
    assert main(["compare", str(runs), "--rows", "metric", "--columns", "metric"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--rows" in err and "--columns" in err
    assert main(["compare", str(runs), "--columns", "setting"]) == 2
    assert "setting" in capsys.readouterr().err


def test_tasks_as_columns_show_a_continual_run_after_each_task(tmp_path, capsys):
    store = ResultsStore(tmp_path / "results.sqlite")
    for seed in (0, 1):
        for task, acc in enumerate((90.0 + seed, 80.0 + seed, 70.0 + seed)):
            store.record("split", "prd", seed, {"cil_avg_acc": acc}, task=task)
            store.record("split", "lwf", seed, {"cil_avg_acc": acc - 5}, task=task)
    (tmp_path / "split").mkdir()
    doc = table(tmp_path, capsys, "--columns", "task", "--baseline", "lwf")
    assert doc["metrics"] == ["task 1", "task 2", "task 3"]
    prd = next(row for row in doc["rows"] if row["variant"] == "prd")
    assert prd["task 2"]["mean"] == pytest.approx(80.5) and prd["task 3"]["delta"] == 5.0


def test_rows_of_metrics_have_no_direction_and_json_names_the_measured_metric(runs, capsys):
    assert main(["compare", str(runs), "--rows", "metric", "--columns", "experiment",
                 "--format", "md"]) == 0
    header = capsys.readouterr().out.splitlines()[2]
    assert "↑" not in header and "digits" in header
    doc = table(runs, capsys, "--columns", "experiment")
    assert doc["measured"] == "top1"
