"""Runs of several processes (``trainer: {strategy: ddp, devices: 2}``, gloo on CPU) against one
process with the same global batch: the same data order shared between the processes, the same
numbers, files written by the first process alone."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from run_logs import log_rows

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


def numbers(run_dir: Path) -> list[float]:
    return [float(v) for row in log_rows(run_dir) for k, v in sorted(row.items())
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


@pytest.mark.parametrize("size,world", [(10, 1), (10, 2), (11, 2), (2, 3), (1, 4), (7, 3)])
def test_each_process_takes_every_worlds_sample_of_one_order(size, world):
    from distill.data.base import EpochSampler

    alone = [k for _, k in EpochSampler(size, 5, lambda: 3)]
    shares = [[k for _, k in EpochSampler(size, 5, lambda: 3, rank, world)]
              for rank in range(world)]
    assert {len(share) for share in shares} == {-(-size // world)}  # the same steps in each
    padded = (alone * world)[:len(shares[0]) * world]
    assert [share[i] for i in range(len(shares[0])) for share in shares] == padded
    if world == 1:
        import torch

        g = torch.Generator().manual_seed(5 * 100_003 + 3)  # one process: as before
        assert alone == torch.randperm(size, generator=g).tolist()


@pytest.mark.parametrize("trainer,several", [({}, False), ({"devices": 1}, False),
                                             ({"devices": 2}, True), ({"strategy": "ddp"}, True),
                                             ({"num_nodes": 2}, True), ({"devices": "auto"}, False)])
def test_what_asks_for_several_processes(trainer, several):
    from distill.engine.process_rank import is_writer
    from distill.engine.process_rank import several as asks

    assert asks(trainer) is several
    assert is_writer([trainer])  # rank 0 here


def test_what_several_processes_do_not_serve_is_refused(tmp_path, capsys):
    from experiment_text import RETRIEVAL, digits_pair

    from distill.cli import main

    cases = {
        "spawn": (digits_pair("s", "  - {name: ce}\n", tail="trainer: {strategy: ddp_spawn}\n"),
                  "trainer.strategy: 'ddp_spawn': give one of auto, ddp, single_device"),
        "continual": (digits_pair("c", "  - {name: ce}\n", tail="continual: {tasks: 2}\n"
                                  "trainer: {strategy: ddp, devices: 2, accelerator: cpu}\n"),
                      "trainer: a task sequence runs in one process"),
        "retrieval": (RETRIEVAL + "trainer: {strategy: ddp, devices: 2, accelerator: cpu}\n",
                      "trainer: several processes train classification sets"),
    }
    for name, (text, message) in cases.items():
        f = tmp_path / f"{name}.yaml"
        f.write_text(text)
        assert main(["validate", str(f)]) == 2
        said = capsys.readouterr()
        assert message in said.err + said.out, (name, said)
    f = tmp_path / "jobs.yaml"
    f.write_text(digits_pair("j", "  - {name: ce}\n",
                             tail="trainer: {strategy: ddp, devices: 2, accelerator: cpu}\n"))
    assert main(["run", str(f), "--out", str(tmp_path / "out"), "--jobs", "2"]) == 2
    said = capsys.readouterr()
    assert "give it without --jobs" in said.err + said.out
    assert not (tmp_path / "out").exists()
