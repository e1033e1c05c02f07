"""`distill run FILE --jobs N` (the grid in N local processes) and `distill rebuild OUT` (the
results store made again from the run folders): every row written exactly once, equal to a
sequential run's, and a rebuilt store equal to the one the runs wrote."""
from __future__ import annotations

import json
import sqlite3

import pytest

from distill.cli import main
from distill.results import ResultsStore
from experiment_text import digits_pair

GRID = digits_pair("grid", "  - {name: ce}\n  - {name: kd}\n", seeds="[0, 1]",
                   tail="variants:\n  ce-only: {objectives: [{name: ce}]}\n  kd: {}\n")
CONTINUAL = """\
name: split
seeds: [0]
data: {name: digits, batch_size: 64}
student:
  net: {name: mlp, hidden: [32]}
train: {epochs: 1, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
objectives: [{name: ce}]
continual: {tasks: 2, setting: class-incremental}
"""


def rows(out):
    """The store's rows without the time they were written."""
    return [{k: v for k, v in row.items() if k != "recorded_at"}
            for row in ResultsStore(out / "results.sqlite").rows()]


def write(tmp_path, text, name):
    f = tmp_path / f"{name}.yaml"
    f.write_text(text)
    return f


@pytest.mark.slow
def test_two_jobs_write_every_row_once_equal_to_one_process(tmp_path, capsys):
    f = write(tmp_path, GRID, "grid")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["run", str(f), "--out", str(one)]) == 0
    assert main(["run", str(f), "--out", str(two), "--jobs", "2"]) == 0
    assert rows(two) == rows(one)
    with sqlite3.connect(two / "results.sqlite") as db:
        (count,), = db.execute("SELECT COUNT(*) FROM results").fetchall()
        (distinct,), = db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT experiment, variant, "
                                  "seed, task, metric FROM results)").fetchall()
    assert count == distinct == len(rows(one))
    log = (two / "grid" / "jobs" / "job1.log").read_text()
    for variant in ("ce-only", "kd"):  # the second process went through the whole grid
        assert all(f"{variant} seed {seed}" in log for seed in (0, 1)), log
    assert "Mean ± sample std" in log  # and printed its table
    assert "--jobs 2" in capsys.readouterr().out


def test_the_rebuilt_store_equals_the_one_the_runs_wrote(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", str(write(tmp_path, GRID.replace("[0, 1]", "[0]"), "grid")),
                 "--out", str(out)]) == 0
    assert main(["run", str(write(tmp_path, CONTINUAL, "split")), "--out", str(out)]) == 0
    written = rows(out)
    assert {r["experiment"] for r in written} == {"grid", "split"}
    assert {r["task"] for r in written if r["experiment"] == "split"} == {0, 1}
    assert any(r["variant"] == "teacher" for r in written)
    (out / "results.sqlite").unlink()
    capsys.readouterr()
    assert main(["rebuild", str(out)]) == 0
    assert "rebuilt from 4 finished stages" in capsys.readouterr().out  # teacher, 2 runs, split
    assert rows(out) == written
    (out / "results.sqlite").write_bytes(b"damaged beyond repair")
    assert main(["rebuild", str(out)]) == 0
    assert rows(out) == written


def test_rebuild_refuses_what_is_not_an_output_root_in_one_line(tmp_path, capsys):
    assert main(["rebuild", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["rebuild", str(tmp_path)]) == 2
    assert "source.json" in capsys.readouterr().err
    run = tmp_path / "exp" / "ce" / "seed0"
    run.mkdir(parents=True)
    (tmp_path / "exp" / "source.json").write_text("{}")
    (run / "metrics.json").write_text("{broken")
    assert main(["rebuild", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics.json" in err and "damaged" in err
    assert not (tmp_path / "results.sqlite").exists()  # nothing half-written


@pytest.mark.parametrize("value", ["0", "65", "x"])
def test_a_bad_number_of_jobs_is_one_line(tmp_path, capsys, value):
    f = write(tmp_path, GRID, "grid")
    assert main(["run", str(f), "--jobs", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--jobs" in err and "1 to 64" in err
