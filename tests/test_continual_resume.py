"""Stopping a run anywhere and continuing it: a process killed with SIGKILL inside a task or
between tasks ends, once resumed, with the very accuracy matrix of a run that was never
interrupted; finished tasks are not retrained; a single-stage run resumes exactly too; and bad
input (another experiment file, an unreadable checkpoint) stops with one line and exit 2, leaving
the run folder as it was."""
from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_files import write_py2_pickle

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

TINY = """\
name: tiny_seq
seeds: [0]
data: {name: mnist1d, batch_size: 32, views: {name: signal, count: 2}}
student:
  net: {name: mlp, hidden: [64], dropout: 0.1}
teacher: {role: snapshot}
train:
  epochs: 6
  optimizer: {name: sgd, lr: 0.01, momentum: 0.9}
  schedule: cosine
continual: {tasks: 3, setting: task-incremental}
objectives: [{name: supcon, temperature: 0.1}, {name: prd}]
checkpoint_seconds: 0
"""
RUN = Path("tiny_seq") / "default" / "seed0"

# runs the CLI and kills its own process with SIGKILL right after the manifest records task 0
KILL_BETWEEN_TASKS = """
import os, signal, sys
from distill.continual.manifest import Manifest
record = Manifest.record
def record_then_die(self, entry, write=True):
    record(self, entry, write)
    if entry["task"] == 0:
        os.kill(os.getpid(), signal.SIGKILL)
Manifest.record = record_then_die
from distill.cli import main
sys.exit(main(sys.argv[1:]))
"""


def distill(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distill.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def kill_when(path: Path, command: list[str], cwd: Path) -> None:
    """Run ``command``, SIGKILL it as soon as ``path`` exists."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while process.poll() is None:
        if path.exists():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def final(out: Path) -> dict:
    return json.loads((out / RUN / "metrics.json").read_text())


def manifest(out: Path) -> dict:
    return json.loads((out / RUN / "manifest.json").read_text())


def state_of(folder: Path) -> dict:
    """Every file under ``folder``: its content hash and modification time."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    (folder / "tiny.yaml").write_text(TINY)
    return folder


@pytest.fixture(scope="module")
def uninterrupted(workdir):
    done = distill("run", "tiny.yaml", "--out", "whole", cwd=workdir)
    assert done.returncode == 0, done.stderr
    return final(workdir / "whole")


@pytest.fixture(scope="module")
def killed_in_task1(workdir):
    """A run killed after the first checkpoint of task 1 was written."""
    out = workdir / "killed"
    kill_when(out / RUN / "task1" / "checkpoints" / "last.ckpt",
              [sys.executable, "-m", "distill.cli", "run", "tiny.yaml", "--out", str(out)],
              workdir)
    return out


def copy_of(source: Path, name: str) -> Path:
    target = source.parent / name
    shutil.copytree(source, target)
    return target


def test_a_run_killed_inside_a_task_resumes_to_the_same_matrix(workdir, uninterrupted,
                                                                killed_in_task1):
    out = copy_of(killed_in_task1, "killed_inside")
    assert len(manifest(out)["completed"]) == 1  # killed inside task 1
    epoch = torch.load(out / RUN / "task1/checkpoints/last.ckpt", weights_only=True)["epoch"]
    assert epoch < 5  # task 1 was not finished
    resumed = distill("resume", out / "tiny_seq", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert "task 0: finished earlier, not retrained" in resumed.stdout
    assert final(out)["R"] == uninterrupted["R"]
    assert {k: v for k, v in final(out).items() if k.startswith(("til_", "cil_"))} == {
        k: v for k, v in uninterrupted.items() if k.startswith(("til_", "cil_"))}


def test_a_run_killed_between_tasks_resumes_without_retraining(workdir, uninterrupted):
    out = workdir / "between"
    killed = subprocess.run([sys.executable, "-c", KILL_BETWEEN_TASKS, "run", "tiny.yaml",
                             "--out", str(out)], cwd=workdir, capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -signal.SIGKILL
    assert len(manifest(out)["completed"]) == 1 and not (out / RUN / "task1").exists()
    task0 = state_of(out / RUN / "task0")
    resumed = distill("run", "tiny.yaml", "--resume", "--out", out, cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert "task 0: finished earlier, not retrained" in resumed.stdout
    assert "task 1: classes" in resumed.stdout
    assert state_of(out / RUN / "task0") == task0  # its checkpoint and logs untouched
    assert final(out)["R"] == uninterrupted["R"]


def test_a_finished_run_is_skipped_and_left_as_it_was(workdir, uninterrupted):
    before = state_of(workdir / "whole" / RUN)
    again = distill("run", "tiny.yaml", "--out", "whole", cwd=workdir)
    assert again.returncode == 0 and "finished earlier, skipped" in again.stdout
    assert state_of(workdir / "whole" / RUN) == before


def refused(workdir: Path, out: Path, *args, file: str = "tiny.yaml") -> str:
    """Run ``file`` into ``out``: it must stop with one line and exit 2, changing nothing."""
    before, contents = state_of(out / RUN), {
        k: h for k, (h, _) in state_of(out).items()}
    result = distill("run", file, "--out", out, *args, cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert state_of(out / RUN) == before
    assert {k: h for k, (h, _) in state_of(out).items()} == contents
    return result.stderr


def test_another_experiment_file_is_refused(workdir, killed_in_task1):
    out = copy_of(killed_in_task1, "other_file")
    (workdir / "other.yaml").write_text(TINY.replace("tasks: 3", "tasks: 2"))
    message = refused(workdir, out, "--resume", file="other.yaml")
    assert "holds a run of a different configuration" in message


def test_a_truncated_checkpoint_is_refused(workdir, killed_in_task1):
    out = copy_of(killed_in_task1, "truncated")
    checkpoint = out / RUN / "task1" / "checkpoints" / "last.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    message = refused(workdir, out, "--resume")
    assert "cannot be read" in message and "task1" in message


def test_a_corrupted_checkpoint_of_a_finished_task_is_refused(workdir, killed_in_task1):
    out = copy_of(killed_in_task1, "corrupted")
    checkpoint = out / RUN / "task0" / "checkpoints" / "last.ckpt"
    data = bytearray(checkpoint.read_bytes())
    data[100:200] = b"\x00" * 100
    checkpoint.write_bytes(bytes(data))
    message = refused(workdir, out, "--resume")
    assert "cannot be read" in message and "task0" in message


SINGLE = """\
name: single
seeds: [0]
data: {name: mnist1d, batch_size: 64, views: {name: signal, count: 2}}
student:
  net: {name: mlp, hidden: [64], dropout: 0.2}
train:
  epochs: 6
  optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
  schedule: cosine
objectives: [{name: ce}]
checkpoint_seconds: 0
"""


def test_a_killed_single_stage_run_resumes_to_the_same_result(tmp_path):
    (tmp_path / "single.yaml").write_text(SINGLE)
    whole = distill("run", "single.yaml", "--out", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    run = Path("single") / "default" / "seed0"
    checkpoint = tmp_path / "part" / run / "checkpoints" / "last.ckpt"
    kill_when(checkpoint, [sys.executable, "-m", "distill.cli", "run", "single.yaml", "--out",
                           "part"], tmp_path)
    assert torch.load(checkpoint, weights_only=True)["epoch"] < 5
    resumed = distill("run", "single.yaml", "--out", "part", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "whole" / run / "metrics.json").read_text())
    b = json.loads((tmp_path / "part" / run / "metrics.json").read_text())
    assert b["history"] == a["history"] and b["top1"] == a["top1"]


def test_the_embedded_file_runs_end_to_end(tmp_path):
    done = distill("run", ROOT / "experiments" / "split_mnist1d.yaml", "--fast",
                   "--seeds", "0", "--out", tmp_path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for variant in ("finetune", "lwf", "prd"):
        run = tmp_path / "_fast" / "split_mnist1d" / variant / "seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert len(metrics["R"]["cil"]) == 5 and "cil_forgetting" in metrics["definitions"]
        assert "test samples" in metrics["definitions"]["cil_avg_acc_samples"]
        assert (run / "accuracy_matrix.png").exists()
    table = distill("compare", tmp_path / "_fast" / "split_mnist1d", "--format", "md",
                    cwd=tmp_path)
    assert "| prd |" in table.stdout and "cil_forgetting" in table.stdout


def write_every_class_cifar100(root: Path) -> None:
    """CIFAR-100 in its real format with every class in both sets (2 train, 1 test image each)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, per_class in (("train", 2), ("test", 1)):
        labels = [c for c in range(100) for _ in range(per_class)]
        write_py2_pickle(folder / name, {
            "batch_label": name, "filenames": [f"{i}.png" for i in range(len(labels))],
            "fine_labels": labels, "coarse_labels": [y // 5 for y in labels],
            "data": rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)})
    write_py2_pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                       "coarse_label_names": [f"c{i}" for i in range(20)]})


def test_the_split_cifar100_file_runs_its_20_tasks_on_real_format_files(tmp_path):
    write_every_class_cifar100(tmp_path / "data")
    done = distill("run", ROOT / "experiments" / "split_cifar100.yaml", "--fast",
                   "--seeds", "0", "--variant", "prd", "--out", tmp_path / "runs",
                   "--set", f"data.root={tmp_path / 'data'}", "--set", "data.num_workers=0",
                   "--set", "data.batch_size=4", "--set", "student.net.name=small_cnn",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "runs" / "_fast" / "split_cifar100" / "prd" / "seed0" /
                          "metrics.json").read_text())
    assert [len(row) for row in metrics["R"]["til"]] == list(range(1, 21))
    assert len(metrics["R"]["cil"]) == 20 and len(metrics["tasks"]) == 20
