"""Runs of several processes (``trainer: {strategy: ddp, devices: 2}``, gloo on CPU) against one
process with the same global batch: the same data order shared between the processes, the same
numbers, files written by the first process alone."""
from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

GRID = """\
name: {name}
seeds: [0]
data: {{name: mnist1d, num_samples: 640, batch_size: {batch}}}
teacher:
  role: frozen
  net: {{name: cnn1d, width: 8}}
  train: {{epochs: 1, optimizer: {{name: adam, lr: 3.0e-3}}}}
student:
  net: {{name: cnn1d, width: 8}}
train: {{epochs: 2, optimizer: {{name: sgd, lr: 0.1, momentum: 0.9}}}}
objectives: [{{name: ce}}, {{name: kd, temperature: 4}}]
variants:
  kd: {{}}
  kd+nd: {{objectives: [{{name: ce}}, {{name: kd, temperature: 4}}, {{name: nd}}]}}
{trainer}"""


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def numbers(run_dir: Path) -> list[float]:
    return [float(v) for row in rows(run_dir) for k, v in sorted(row.items())
            if v and k not in ("epoch", "step")]


@pytest.mark.slow
def test_two_processes_equal_one_with_their_global_batch(tmp_path):
    runs = {}
    for name, batch, trainer in (("one", 64, ""),
                                 ("two", 32, "trainer: {strategy: ddp, devices: 2, "
                                             "accelerator: cpu}\n")):
        f = tmp_path / f"{name}.yaml"
        f.write_text(GRID.format(name=name, batch=batch, trainer=trainer))
        done = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(f), "--out",
                               str(tmp_path / "out")], capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        runs[name] = tmp_path / "out" / name
        if name == "two":
            lines = [line for line in done.stdout.splitlines() if "epoch 1/2" in line]
            assert len(lines) == 2, done.stdout  # one line per epoch and run, not per process
    for stage in ("teacher", "kd/seed0", "kd+nd/seed0"):
        one, two = numbers(runs["one"] / stage), numbers(runs["two"] / stage)
        assert len(one) == len(two) > 0
        assert two == pytest.approx(one, rel=1e-4, abs=1e-5), stage
    # the first process alone wrote the results: one row per metric and run
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as db:
        counts = db.execute("SELECT experiment, variant, metric, COUNT(*) FROM results "
                            "GROUP BY 1, 2, 3").fetchall()
    assert {c[-1] for c in counts} == {1}
    assert {c[1] for c in counts if c[0] == "two"} == {"teacher", "kd", "kd+nd"}
    metrics = json.loads((runs["two"] / "kd" / "seed0" / "metrics.json").read_text())
    assert metrics["top1"] == json.loads(
        (runs["one"] / "kd" / "seed0" / "metrics.json").read_text())["top1"]
