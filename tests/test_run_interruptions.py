"""Nothing lost: a stage killed with SIGKILL and resumed keeps every epoch in its CSV log, equal to
an uninterrupted run's; two ``distill run`` of one file into one ``--out`` at once both finish, and
the store and table equal a sequential run's."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiment_text import arithmetic, digits_pair
from run_logs import log_rows

pytestmark = pytest.mark.slow

SINGLE = """\
name: logged
seeds: [0]
data: {name: digits, batch_size: 64}
student:
  net: {name: mlp, hidden: [32], dropout: 0.1}
train: {epochs: 4, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
objectives: [{name: ce}]
"""
RUN = Path("logged") / "default" / "seed0"
EVERY_EPOCH = "checkpoint_seconds: 0\n"  # a checkpoint at each epoch's end, for the kills below

# the CLI, killing its own process with SIGKILL when epoch 3 starts (epochs 0-2 checkpointed)
KILL_AT_EPOCH_3 = """
import os, signal, sys
from distill.engine.module import DistillationModule
def die(self):
    if self.current_epoch == 3:
        os.kill(os.getpid(), signal.SIGKILL)
DistillationModule.on_train_epoch_start = die
from distill.cli import main
sys.exit(main(sys.argv[1:]))
"""


def distill(*args, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "distill.cli"]
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True,
                          timeout=600)


def whole_and_resumed(tmp_path: Path, name: str, text: str) -> tuple[Path, Path, Path]:
    """The experiment ``text`` (named ``name``, one variant, seed 0, a checkpoint every epoch) run
    uninterrupted into ``whole``, and into ``broken`` killed as epoch 3 starts, then run again;
    with the run's folder under each."""
    f = tmp_path / f"{name}.yaml"
    f.write_text(text + EVERY_EPOCH)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert distill("run", f, "--out", whole).returncode == 0
    assert distill("run", f, "--out", broken, code=KILL_AT_EPOCH_3).returncode == -9
    assert distill("run", f, "--out", broken).returncode == 0
    return whole, broken, Path(name) / "default" / "seed0"


def test_a_resumed_stage_keeps_every_epoch_of_its_log(tmp_path):
    f = tmp_path / "logged.yaml"
    f.write_text(SINGLE + EVERY_EPOCH)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert distill("run", f, "--out", whole).returncode == 0
    killed = distill("run", f, "--out", broken, code=KILL_AT_EPOCH_3)
    assert killed.returncode == -9
    assert {r["epoch"] for r in log_rows(broken / RUN)} == {"0", "1", "2"}
    assert distill("run", f, "--out", broken).returncode == 0
    expected = log_rows(whole / RUN)
    assert len(expected) == 8  # a train row and a validation row per epoch
    assert log_rows(broken / RUN) == expected  # exact resume: the very same numbers


def test_two_runs_of_one_file_into_one_out_at_once_both_finish(tmp_path):
    f = tmp_path / "pair.yaml"
    text = digits_pair("pair", "  - {name: ce}\n  - {name: kd}\n", seeds="[0, 1]",
                       tail="variants:\n  ce-only: {objectives: [{name: ce}]}\n  kd: {}\n")
    # a teacher that trains for seconds, not a fraction of one: the process that starts a moment
    # later finds it still held, however fast the engine's epochs
    f.write_text(text.replace("  train: {epochs: 1}\nstudent", "  train: {epochs: 30}\nstudent"))
    shared, sequential = tmp_path / "shared", tmp_path / "sequential"
    command = [sys.executable, "-m", "distill.cli", "run", str(f), "--out", str(shared)]
    first, second = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for _ in range(2))
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    said = outputs[0][0] + outputs[1][0]
    assert "another process" in said  # one of them met the other's lock and said so
    assert distill("run", f, "--out", sequential).returncode == 0

    def table(out: Path) -> list:
        rows = json.loads(distill("compare", out / "pair", "--format", "json").stdout)
        return rows

    assert table(shared) == table(sequential)
    for variant in ("ce-only", "kd"):
        for seed in (0, 1):
            assert (shared / "pair" / variant / f"seed{seed}" / "metrics.json").exists()


QCRD = arithmetic("qcrd", 48, 5, "  - {name: qcrd, rounds_back: 2, samples: 3}\n")


def test_qcrd_killed_mid_training_resumes_to_the_same_numbers(tmp_path):
    """Killed as epoch 3 starts (after its round began: snapshot pushed, the student's negatives
    drawn from 2 rounds back, the discriminator re-trained), then run again: the snapshot ring,
    the discriminator and its optimiser come back from the checkpoint, and every logged number and
    the final weights equal an uninterrupted run's."""
    import torch

    whole, broken, run = whole_and_resumed(tmp_path, "qcrd", QCRD)
    assert log_rows(broken / run) == log_rows(whole / run)
    assert (json.loads((broken / run / "metrics.json").read_text())["history"]
            == json.loads((whole / run / "metrics.json").read_text())["history"])
    finals = [torch.load(out / run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
              for out in (whole, broken)]
    assert finals[0].keys() == finals[1].keys()
    for key in finals[0]:
        if isinstance(finals[0][key], torch.Tensor):
            assert torch.equal(finals[0][key], finals[1][key]), key
    ring = finals[0]["objectives.0._extra_state"]["ring"]
    assert len(ring) == 2  # the snapshots are in the checkpoint


MUTUAL = """\
name: dml
seeds: [0]
data: {name: digits, batch_size: 64}
teacher: {role: mutual, net: {name: mlp, hidden: [48], dropout: 0.1}}
student:
  net: {name: mlp, hidden: [32], dropout: 0.1}
train: {epochs: 5, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
objectives:
  - {name: ce}
  - {name: kd, temperature: 1.0}
"""


def test_a_mutual_teacher_killed_mid_training_resumes_to_the_same_numbers(tmp_path):
    """The co-trained teacher's weights, optimiser state and accuracy history come back from the
    checkpoint: every logged number (its own included) equals an uninterrupted run's."""
    run, metrics = teacher_resumed_alike(tmp_path, "dml", MUTUAL)
    assert "top1_best" in metrics["teacher_metrics"]
    import torch

    kept = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert len(kept["teacher_history"]) == 5  # the epochs before the kill included


def teacher_resumed_alike(tmp_path: Path, name: str, text: str) -> tuple[Path, dict]:
    """:func:`whole_and_resumed` for a run whose teacher is reported: every logged number (the
    teacher's accuracy included) and the metrics (time aside) equal the uninterrupted run's;
    returns the resumed run's folder and metrics."""
    whole, broken, run = whole_and_resumed(tmp_path, name, text)
    rows = log_rows(broken / run)
    assert rows == log_rows(whole / run) and any(r.get("val/teacher_acc") for r in rows)
    metrics = [json.loads((out / run / "metrics.json").read_text()) for out in (whole, broken)]
    for m in metrics:
        m.pop("train_seconds")
    assert metrics[0] == metrics[1]
    return broken / run, metrics[1]


ENSEMBLE = """\
name: trio
seeds: [0]
data: {name: digits, batch_size: 64}
teacher:
  role: ensemble
  combine: probabilities
  net: {name: mlp, hidden: [48]}
  train: {epochs: 2, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
  members: [{seed: 0}, {seed: 1}, {seed: 2, weight: 2}]
student:
  net: {name: mlp, hidden: [32], dropout: 0.1}
train: {epochs: 5, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
objectives:
  - {name: ce}
  - {name: kd, temperature: 4.0}
"""


def test_a_run_with_an_ensemble_teacher_killed_mid_training_resumes_to_the_same_numbers(
        tmp_path):
    """The members' stages (2 epochs, before the kill) are reused, and the student's run resumed
    from its checkpoint logs the very numbers of an uninterrupted one, the ensemble's own
    accuracy included."""
    run, metrics = teacher_resumed_alike(tmp_path, "trio", ENSEMBLE)
    assert len(log_rows(run)) == 10 and "top1" in metrics["teacher_metrics"]
    stages = [p.name for p in run.parents[1].iterdir() if p.name.startswith("teacher")]
    assert len(stages) == 3


def tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """tag -> step -> value over every event file in ``folder`` (TFRecord framing: length,
    its CRC, the Event protobuf, its CRC), read with tensorboardX's own Event message."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    found: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + length])
            i += 12 + length + 4
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = value.simple_value
    return found


def test_a_resumed_stage_keeps_every_epoch_in_its_tensorboard_events(tmp_path):
    text = SINGLE.replace("objectives: [{name: ce}]", "objectives: [{name: ce}]\n"
                                                      "loggers: [csv, tensorboard]")
    whole, broken, run = whole_and_resumed(tmp_path, "logged", text)
    assert log_rows(broken / run) == log_rows(whole / run)
    events = [tensorboard_scalars(out / run / "tensorboard") for out in (whole, broken)]
    assert len(list((broken / run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    epochs = {int(v) for v in events[1]["epoch"].values()}
    assert epochs == {0, 1, 2, 3}  # before the kill from the first file, after from the second
    assert events[1]["val/acc"] == pytest.approx(events[0]["val/acc"])


def test_a_run_with_loader_workers_and_augmented_views_resumes_to_the_same_numbers(tmp_path):
    """CIFAR-format files, two loader workers, the dataset's crop and flip and two crop_jitter
    views, dropout: killed as epoch 3 starts and run again, every logged number equals an
    uninterrupted run's (each input is drawn from (seed, epoch, index), not from a worker's
    generator)."""
    from dataset_files import write_cifar10

    write_cifar10(tmp_path / "data", n=40)
    text = f"""\
name: workers
seeds: [0]
data: {{name: cifar10, root: {tmp_path / 'data'}, batch_size: 8, num_workers: 2,
        views: {{name: crop_jitter, count: 2}}}}
student:
  net: {{name: mlp, hidden: [32], dropout: 0.2}}
train: {{epochs: 5, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
objectives:
  - {{name: ce}}
  - {{name: supcon, temperature: 0.5, hidden_dim: 16}}
"""
    whole, broken, run = whole_and_resumed(tmp_path, "workers", text)
    rows = log_rows(broken / run)
    assert len(rows) == 10 and rows == log_rows(whole / run)
