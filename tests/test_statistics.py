"""How sure a table is: confidence intervals over seeds and paired t-tests against the baseline,
checked against hand-computed values and scipy's own tests; a difference built to be noise is
marked not significant and one built to be real is not."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from distill.cli import main
from distill.results import MethodTable, ResultsStore
from distill.results.statistics import confidence_half_width, paired_test
from distill.results.table import to_csv, to_json, to_markdown


def test_the_confidence_half_width_is_t_times_the_standard_error():
    # 1, 2, 3, 4: s = sqrt(5/3) = 1.290994, t(0.975, 3) = 3.182446 (the printed t-table)
    assert confidence_half_width((1.0, 2.0, 3.0, 4.0)) == pytest.approx(
        3.182446 * 1.290994 / 2, rel=1e-5)
    # 90%: t(0.95, 2) = 2.919986 on 10, 12, 17: s = 3.605551
    assert confidence_half_width((10.0, 12.0, 17.0), 0.90) == pytest.approx(
        2.919986 * 3.605551 / math.sqrt(3), rel=1e-5)
    assert confidence_half_width((5.0,)) is None


def test_the_paired_test_equals_the_hand_formula_and_scipys():
    variant = {0: 75.1, 1: 74.3, 2: 76.0, 3: 75.5}
    baseline = {0: 74.0, 1: 73.9, 2: 74.8, 3: 74.1}
    d = np.array([1.1, 0.4, 1.2, 1.4])
    t_hand = d.mean() / (d.std(ddof=1) / 2)
    test = paired_test(variant, baseline)
    assert test.n == 4 and test.mean_difference == pytest.approx(1.025)
    assert test.t == pytest.approx(t_hand)
    reference = stats.ttest_rel([75.1, 74.3, 76.0, 75.5], [74.0, 73.9, 74.8, 74.1])
    assert test.t == pytest.approx(reference.statistic)
    assert test.p == pytest.approx(reference.pvalue)
    assert test.p == pytest.approx(2 * stats.t.sf(t_hand, 3))


def test_only_the_shared_seeds_are_pairs_and_fewer_than_three_are_not_tested():
    test = paired_test({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, {2: 1.0, 3: 1.5, 4: 9.0})
    assert test.n == 2 and test.mean_difference == pytest.approx(2.25)
    assert test.t is None and test.p is None and test.significant(0.05) is None
    assert paired_test({0: 1.0}, {1: 1.0}).n == 0 and paired_test({0: 1.0}, {1: 1.0}).p is None


def test_differences_all_equal_are_certain_and_none_at_all_is_no_difference():
    same = paired_test({0: 2.0, 1: 3.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert same.t == math.inf and same.p == 0.0 and same.significant(0.05)
    none = paired_test({0: 2.0, 1: 3.0, 2: 4.0}, {0: 2.0, 1: 3.0, 2: 4.0})
    assert none.t == 0.0 and none.p == 1.0 and not none.significant(0.05)


def rows(values: dict[str, list[float]], seeds=None):
    return [{"experiment": "x", "variant": variant, "seed": (seeds or {}).get(variant, range(99))[i],
             "task": -1, "metric": "top1", "value": value, "recorded_at": "2026-01-01"}
            for variant, vs in values.items() for i, value in enumerate(vs)]


rng = np.random.default_rng(0)
BASE = 70 + rng.normal(0, 2.0, 5)  # seed-to-seed spread of 2 points, shared by the pairs
VALUES = {
    "ce": list(BASE),
    "real": list(BASE + 1.0 + rng.normal(0, 0.2, 5)),   # +1 on every seed: real
    "noise": list(BASE + rng.normal(0, 1.5, 5)),        # no effect, noise of 1.5: not real
    "two": [71.0, 72.0],                                  # seeds 0 and 1 only
}


def test_a_difference_built_as_noise_is_marked_and_one_built_as_real_is_not():
    table = MethodTable.from_rows(rows(VALUES), baseline="ce", alpha=0.05, order=list(VALUES))
    assert table.test("real", "top1").significant(0.05)
    assert not table.test("noise", "top1").significant(0.05)
    text = to_markdown(table)
    line = {row.split(" | ")[0].strip("| "): row for row in text.splitlines()}
    delta = table.delta("real", "top1")
    assert f"| {delta:+.2f} |" in line["real"] and "ns" not in line["real"]
    assert f"{table.delta('noise', 'top1'):+.2f} ns" in line["noise"]
    assert f"{table.delta('two', 'top1'):+.2f} n<3" in line["two"]
    assert "paired t-test" in text and "p < 0.05" in text


def test_alpha_decides_which_differences_are_significant():
    values = {"ce": [70.0, 71.0, 72.0, 73.0], "kd": [70.9, 71.5, 73.4, 73.6]}
    p = paired_test(dict(enumerate(values["kd"])), dict(enumerate(values["ce"]))).p
    assert 0.01 < p < 0.05
    loose = MethodTable.from_rows(rows(values), baseline="ce", alpha=0.05)
    strict = MethodTable.from_rows(rows(values), baseline="ce", alpha=0.01)
    assert "ns" not in to_markdown(loose).splitlines()[3]
    assert "ns" in to_markdown(strict).splitlines()[3]
    assert "p < 0.01" in to_markdown(strict)


def test_cells_show_the_interval_at_the_level_asked_for():
    values = {"ce": [70.0, 71.0, 72.0, 73.0]}
    std = MethodTable.from_rows(rows(values))
    ci95 = MethodTable.from_rows(rows(values), level=0.95)
    ci80 = MethodTable.from_rows(rows(values), level=0.80)
    assert "71.50 ± 1.29" in to_markdown(std)
    assert f"71.50 ± {confidence_half_width(tuple(values['ce'])):.2f}" in to_markdown(ci95)
    assert f"71.50 ± {confidence_half_width(tuple(values['ce']), 0.8):.2f}" in to_markdown(ci80)
    assert "95% confidence interval" in to_markdown(ci95)
    assert "80% confidence interval" in to_markdown(ci80)


def test_json_and_csv_carry_the_interval_and_the_test():
    table = MethodTable.from_rows(rows(VALUES), baseline="ce", level=0.95, alpha=0.05)
    doc = json.loads(to_json(table))
    assert doc["level"] == 0.95 and doc["alpha"] == 0.05
    real = next(r for r in doc["rows"] if r["variant"] == "real")["top1"]
    reference = stats.ttest_rel(VALUES["real"], VALUES["ce"])
    assert real["pairs"] == 5 and real["significant"] is True
    assert real["t"] == pytest.approx(reference.statistic)
    assert real["p"] == pytest.approx(reference.pvalue)
    assert real["ci"] == pytest.approx(confidence_half_width(tuple(VALUES["real"])))
    two = next(r for r in doc["rows"] if r["variant"] == "two")["top1"]
    assert two["pairs"] == 2 and two["p"] is None and two["significant"] is None
    header = to_csv(table).splitlines()[0].split(",")
    assert {"top1_ci", "top1_pairs", "top1_t", "top1_p", "top1_significant"} <= set(header)
    plain = MethodTable.from_rows(rows(VALUES), baseline="ce")
    assert "top1_p" not in to_csv(plain) and "pairs" not in to_json(plain)


def test_a_teacher_stage_row_is_not_tested():
    values = {**VALUES, "teacher": [80.0]}
    table = MethodTable.from_rows(rows(values), baseline="ce", alpha=0.05)
    assert table.test("teacher", "top1") is None
    assert "n<3" not in next(line for line in to_markdown(table).splitlines()
                             if line.startswith("| teacher"))


def test_compare_takes_the_statistics_from_the_command_line(tmp_path, capsys):
    store = ResultsStore(tmp_path / "results.sqlite")
    for row in rows(VALUES):
        store.record("x", row["variant"], row["seed"], {"top1": row["value"]})
    (tmp_path / "x").mkdir()
    assert main(["compare", str(tmp_path / "x"), "--format", "json", "--ci", "--paired"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["level"] == 0.95 and doc["alpha"] == 0.05
    assert main(["compare", str(tmp_path / "x"), "--format", "json", "--ci", "0.9",
                 "--paired", "0.01"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["level"] == 0.9 and doc["alpha"] == 0.01


@pytest.mark.parametrize("args,words", [
    (["--ci", "2"], ["--ci", "between 0 and 1"]),
    (["--ci", "nan"], ["--ci", "between 0 and 1"]),
    (["--paired", "x"], ["--paired", "between 0 and 1"]),
    (["--paired", "0"], ["--paired", "between 0 and 1"]),
])
def test_a_bad_level_is_one_line(tmp_path, capsys, args, words):
    assert main(["compare", str(tmp_path)] + args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_a_diverged_seed_is_not_a_pair_and_json_stays_valid():
    values = {"ce": [70.0, 71.0, 72.0, 73.0], "kd": [71.0, 72.5, float("nan"), 74.0]}
    table = MethodTable.from_rows(rows(values), baseline="ce", alpha=0.05)
    test = table.test("kd", "top1")
    assert test.n == 3  # seed 2 (NaN) left out
    assert test.p == pytest.approx(stats.ttest_rel([71.0, 72.5, 74.0], [70.0, 71.0, 73.0]).pvalue)
    json.loads(to_json(table))  # no NaN in the JSON


def test_a_row_sharing_no_seed_with_the_baseline_is_marked_untested():
    values = {"ce": [70.0, 71.0, 72.0], "kd": [71.0, 72.0, 73.0]}
    table = MethodTable.from_rows(rows(values, seeds={"kd": [3, 4, 5]}), baseline="ce",
                                  alpha=0.05)
    assert table.test("kd", "top1").n == 0
    assert "+1.00 n<3" in to_markdown(table)
    kd = next(r for r in json.loads(to_json(table))["rows"] if r["variant"] == "kd")["top1"]
    assert kd["pairs"] == 0 and kd["p"] is None and kd["significant"] is None


def test_the_level_is_written_as_given():
    table = MethodTable.from_rows(rows({"ce": [70.0, 71.0, 72.0]}), level=0.975)
    assert "97.5% confidence interval" in to_markdown(table)
