"""Runs of several processes (``trainer: {strategy: ddp, devices: 2}``, gloo on CPU) against one
process with the same global batch: the same data order shared between the processes, the same
numbers, files written by the first process alone."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from run_logs import log_rows

GRID = """\
name: {name}
seeds: [0]
data: {{name: mnist1d, num_samples: 640, batch_size: {batch}}}
teacher:
  role: frozen
  net: {{name: cnn1d, width: 8, taps: {{t1: convs.1, t2: convs.3}}}}
  train: {{epochs: 1, optimizer: {{name: adam, lr: 3.0e-3}}}}
student:
  net: {{name: cnn1d, width: 8, taps: {{s1: convs.1, s2: convs.3}}}}
train: {{epochs: 2, optimizer: {{name: sgd, lr: 0.1, momentum: 0.9}}}}
objectives: [{{name: ce}}, {{name: kd, temperature: 4}}]
variants:
  kd: {{}}
  kd+nd: {{objectives: [{{name: ce}}, {{name: kd, temperature: 4}}, {{name: nd}}]}}
{every}{trainer}"""

# every other objective of classification sets and the changing teachers; the ones that relate a
# batch's samples (rkd, crd, trg, supcon) or have BatchNorm (fitnet, nd's adapter) read the global
# batch gathered from both processes
EVERY_OBJECTIVE = """\
  nd-adapter:  # a narrower student: nd's adapter (BatchNorm, dropout) reads the global batch
    student: {net: {width: 4}}
    objectives: [{name: ce}, {name: nd}]
  dkd: {objectives: [{name: ce}, {name: dkd, warmup_epochs: 2}]}
  fitnet: {objectives: [{name: ce}, {name: fitnet, pairs: [[s2, t2]]}]}
  at: {objectives: [{name: ce}, {name: at, pairs: [[s1, t1], [s2, t2]]}]}
  rkd: {objectives: [{name: ce}, {name: rkd}]}
  crd: {objectives: [{name: ce}, {name: crd, negatives: 64, dim: 16}]}
  trg: {objectives: [{name: ce}, {name: trg}]}
  supcon:
    data: {views: {name: signal, count: 2}}
    objectives: [{name: supcon, projection_dim: 16}, {name: ce}]
  dino:
    data: {views: {name: signal, count: 2}}
    teacher: {role: ema, momentum: 0.9, train: null}
    objectives:
      - {name: dino, out_dim: 64, hidden: 32, bottleneck: 16, student_temp: 0.1,
         teacher_temp: 0.04, center_momentum: 0.9}
      - {name: ce}
  mutual:
    teacher: {role: mutual, train: null}
    objectives: [{name: ce}, {name: kd, temperature: 1}]
"""


def classification_grid(name: str, batch: int, trainer: str) -> str:
    return GRID.format(name=name, batch=batch, trainer=trainer, every=EVERY_OBJECTIVE)


def retrieval_grid(name: str, batch: int, trainer: str) -> str:
    """The retrieval grid of the tests with towers without BatchNorm (ViTs), 12 steps a stage
    (the global batch of both processes then never holds a padding sample)."""
    from experiment_text import RETRIEVAL

    vit = "image: vit_tiny, image_args: {dim: 16, depth: 1, heads: 2}"
    trainer = trainer.replace("trainer: {", "trainer: {limit_train_batches: 12, ") or \
        "trainer: {limit_train_batches: 12}\n"
    return (RETRIEVAL.replace("name: ret", f"name: {name}")
            .replace("batch_size: 32}", f"batch_size: {batch // 2}, captions_per_image: 1}}")
            .replace("image_args: {width: 4}", vit)
            .replace("embed_dim: 16}", f"embed_dim: 16, {vit}}}") + trainer)


def sequence_grid(name: str, batch: int, trainer: str) -> str:
    """The tests' task sequence (3 tasks of mnist1d: supcon + prd, lwf) without BatchNorm, prd
    also with its softmax over the batch, 2 steps a task epoch (no padding sample)."""
    from test_continual import SEQUENCE

    trainer = trainer.replace("trainer: {", "trainer: {limit_train_batches: 2, ") or \
        "trainer: {limit_train_batches: 2}\n"
    return (SEQUENCE.replace("name: seq", f"name: {name}")
            .replace("batch_size: 32,", f"num_samples: 1000, batch_size: {batch},")
            .replace(", batch_norm: true}", "}")
            .replace("epochs: 1,", "epochs: 2,")
            .replace("  prd: {}\n", "  prd: {}\n  prd-samples: {objectives: [{name: supcon, "
                                    "temperature: 0.1}, {name: prd, over: samples}]}\n")
            + trainer)


def generation_grid(name: str, batch: int, trainer: str) -> str:
    """The tests' arithmetic set (64 problems, 15 to test: shares of 8 and 7), seq2seq networks
    without dropout: a teacher stage on gold rationales, dss and qcrd (its discriminator, the
    teacher's and the student's negatives, at most 2 of the teacher's drawn per step)."""
    from experiment_text import arithmetic

    tail = ("variants:\n  dss: {}\n  qcrd:\n    objectives: [{name: qcrd, samples: 4, "
            "rounds_back: 1, teacher_negatives: 2, discriminator_samples: 64, "
            "discriminator_dim: 8}]\n")
    return (arithmetic(name, 64, 2, "  - {name: dss, samples: 4}\n", tail + trainer)
            .replace("batch_size: 16", f"batch_size: {batch // 4}")
            .replace("test_size: 16", "test_size: 15")
            .replace("heads: 2}", "heads: 2, dropout: 0.0}"))


def run_one_and_two(tmp_path: Path, grid=classification_grid) -> dict[str, Path]:
    """The grid in one process with batch 64, and in two with 32 each (retrieval: 32, 16;
    generation: 16, 8)."""
    runs = {}
    for name, batch, trainer in (("one", 64, ""),
                                 ("two", 32, "trainer: {strategy: ddp, devices: 2, "
                                             "accelerator: cpu}\n")):
        f = tmp_path / f"{name}.yaml"
        f.write_text(grid(name, batch, trainer))
        done = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(f), "--out",
                               str(tmp_path / "out")], capture_output=True, text=True,
                              timeout=1800)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        runs[name] = tmp_path / "out" / name
        if name == "two":
            lines = [line for line in done.stdout.splitlines() if "] epoch 1/" in line]
            # one line per epoch and run, not per process
            assert len(lines) == len(list(runs["one"].rglob("logs/metrics.csv"))), done.stdout
    return runs


def stages_of(runs: dict[str, Path]) -> list[str]:
    """The teacher stage and every variant's run of the one-process grid."""
    return ["teacher"] + [p.relative_to(runs["one"]).as_posix()
                          for p in sorted(runs["one"].glob("*/seed0"))]


def assert_same_numbers(runs: dict[str, Path], stages: list[str]) -> None:
    """Every logged number of each stage, one process against two, to 1e-4."""
    for stage in stages:
        one, two = numbers(runs["one"] / stage), numbers(runs["two"] / stage)
        assert len(one) == len(two) > 0, stage
        assert two == pytest.approx(one, rel=1e-4, abs=1e-5), stage


@pytest.mark.slow
def test_two_processes_equal_one_on_a_retrieval_set(tmp_path):
    """The teacher stage (a cross encoder: itc, itm) and itc, score_kd and dcd read the global
    batch; every process validates over the whole gallery."""
    runs = run_one_and_two(tmp_path, retrieval_grid)
    stages = stages_of(runs)
    assert len(stages) == 4
    assert_same_numbers(runs, stages)


@pytest.mark.slow
def test_two_processes_equal_one_on_a_task_sequence(tmp_path):
    """prd (its prototypes trained in both, its relation over the batch gathered), lwf and the
    snapshot teacher; the manifest and the matrices written once, by the first process."""
    runs = run_one_and_two(tmp_path, sequence_grid)
    for variant in ("prd", "prd-samples", "lwf"):
        one, two = runs["one"] / variant / "seed0", runs["two"] / variant / "seed0"
        assert_same_numbers(runs, [f"{variant}/seed0/task{task}" for task in range(3)])
        rows = [[entry["rows"] for entry in json.loads((run / "manifest.json").read_text())
                 ["completed"]] for run in (one, two)]
        assert len(rows[0]) == 3 and rows[1] == rows[0]
        finals = [json.loads((run / "metrics.json").read_text()) for run in (one, two)]
        assert finals[1]["R"] == finals[0]["R"]
        assert finals[1]["til_avg_acc"] == finals[0]["til_avg_acc"]


@pytest.mark.slow
def test_two_processes_equal_one_on_a_generation_set(tmp_path):
    """dss and qcrd: masked means over the global batch, the teacher's negatives drawn for the
    global batch, the discriminator trained alike in both processes (outside DDP), the answer
    accuracy counted over both shares of the test set."""
    runs = run_one_and_two(tmp_path, generation_grid)
    assert_same_numbers(runs, ["teacher", "dss/seed0", "qcrd/seed0"])


@pytest.mark.slow
def test_two_processes_equal_one_with_accumulated_batches(tmp_path):
    """``accumulate_grad_batches: 2``: each process sums the gradient of a window's first batch
    alone (DDP's no_sync) and all-reduces the sum with its last's."""
    def grid(name: str, batch: int, trainer: str) -> str:
        trainer = trainer.replace("trainer: {", "trainer: {accumulate_grad_batches: 2, ") or \
            "trainer: {accumulate_grad_batches: 2}\n"
        return GRID.format(name=name, batch=batch, trainer=trainer, every="")

    runs = run_one_and_two(tmp_path, grid)
    stages = stages_of(runs)
    assert len(stages) == 3
    assert_same_numbers(runs, stages)


COUNT_ALL_REDUCES = """\
import sys
import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from distill.config import load_experiment
from distill.engine.build import build_data, build_module, seeded

calls = []


class Count(Callback):
    def on_train_start(self, trainer, pl_module):
        def counted(state, bucket):
            calls.append(1)
            return allreduce_hook(state, bucket)
        trainer.strategy.model.register_comm_hook(None, counted)

    def on_train_end(self, trainer, pl_module):
        print(f"rank {trainer.global_rank}: {trainer.num_training_batches} batches, "
              f"{trainer.global_step} steps, {len(calls)} all-reduces")


exp = load_experiment(sys.argv[1]).variants["ce-only"]
seeded(0)
data = build_data(exp, 0)
module = build_module(exp, data, None)
L.Trainer(strategy="ddp_find_unused_parameters_true", devices=2, accelerator="cpu", max_epochs=1,
          logger=False, enable_checkpointing=False, enable_progress_bar=False,
          enable_model_summary=False, num_sanity_val_steps=0,
          callbacks=[Count()]).fit(module, datamodule=data)
"""


@pytest.mark.slow
def test_accumulated_batches_all_reduce_once_a_window(tmp_path):
    """With ``accumulate_grad_batches: 2`` DDP all-reduces the gradients once an optimiser step
    (DDP's no_sync for a window's first batch), counted by a communication hook (one bucket:
    the student is small)."""
    from test_engine import TINY

    f = tmp_path / "tiny.yaml"
    f.write_text(TINY + "trainer: {accumulate_grad_batches: 2}\n")
    script = tmp_path / "count.py"
    script.write_text(COUNT_ALL_REDUCES)
    done = subprocess.run([sys.executable, str(script), str(f)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    # the two processes share the pipe: a line's newline may come after the other's line
    counts = sorted(tuple(map(int, found)) for found in re.findall(
        r"rank \d+: (\d+) batches, (\d+) steps, (\d+) all-reduces", done.stdout))
    batches = counts[0][0]
    assert batches >= 4 and counts == [(batches, -(-batches // 2), -(-batches // 2))] * 2


def numbers(run_dir: Path) -> list[float]:
    return [float(v) for row in log_rows(run_dir) for k, v in sorted(row.items())
            if v and k not in ("epoch", "step")]


@pytest.mark.slow
def test_two_processes_equal_one_with_their_global_batch_for_every_objective(tmp_path):
    runs = run_one_and_two(tmp_path)
    stages = stages_of(runs)
    assert len(stages) == 13
    assert_same_numbers(runs, stages)
    # the first process alone wrote the results: one row per metric and run
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as db:
        counts = db.execute("SELECT experiment, variant, metric, COUNT(*) FROM results "
                            "GROUP BY 1, 2, 3").fetchall()
    assert {c[-1] for c in counts} == {1}
    # (a teacher stage of data with views is named by a digest of its section, batch size in it)
    written = {name: {"teacher-*" if c[1].startswith("teacher-") else c[1] for c in counts
                      if c[0] == name}
               for name in ("one", "two")}
    assert written["two"] == written["one"] >= {"teacher"} | {
        stage.split("/")[0] for stage in stages[1:]}
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
    from experiment_text import digits_pair

    from distill.cli import main

    cases = {
        "spawn": (digits_pair("s", "  - {name: ce}\n", tail="trainer: {strategy: ddp_spawn}\n"),
                  "trainer.strategy: 'ddp_spawn': give one of auto, ddp, single_device"),
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


class ThreadWorld:
    """torch.distributed's all_gather and all_reduce between threads, one rank each."""

    ReduceOp = SimpleNamespace(SUM="sum", MIN="min")

    def __init__(self, world: int):
        self.world, self.slots = world, [None] * world
        # a rank that skips a collective breaks the barrier (an error), not hangs the test
        self.barrier, self.local = threading.Barrier(world, timeout=30), threading.local()

    def is_available(self):
        return True

    def is_initialized(self):
        return True

    def get_backend(self):
        return "gloo"

    def get_world_size(self):
        return self.world

    def get_rank(self):
        return self.local.rank

    def _exchange(self, t):
        self.slots[self.local.rank] = t.clone()
        self.barrier.wait()
        every = list(self.slots)
        self.barrier.wait()
        return every

    def all_gather(self, parts, t):
        for part, value in zip(parts, self._exchange(t)):
            part.copy_(value)

    def all_reduce(self, t, op="sum"):
        every = self._exchange(t)  # in place, as torch.distributed's
        t.copy_(sum(every) if op == "sum" else min(every))

    def each(self, work) -> dict:
        """``work(rank)`` in one thread per rank; their results by rank."""
        out = {}

        def rank(r):
            self.local.rank = r
            try:
                out[r] = work(r)
            except Exception as e:  # returned, for the test to look at
                out[r] = e

        threads = [threading.Thread(target=rank, args=(r,), daemon=True)
                   for r in range(self.world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        return out


def test_gathered_rows_are_the_single_process_batch_and_their_gradient_its_own(monkeypatch):
    import torch

    from distill.contracts import global_batch
    from distill.objectives.rkd import rkd_loss

    torch.manual_seed(0)
    rows = torch.randn(8, 5, dtype=torch.float64)
    alone = rows.clone().requires_grad_(True)
    loss = rkd_loss(alone, alone.detach().pow(2))
    loss.backward()
    world = ThreadWorld(2)
    monkeypatch.setattr(global_batch, "dist", world)

    def rank(r):
        mine = rows[r::2].clone().requires_grad_(True)  # this process's rows (EpochSampler)
        whole = global_batch.gather_rows(mine)
        each = rkd_loss(whole, global_batch.gather_rows(mine.detach().pow(2)))
        each.backward()
        return whole.detach(), mine.grad / 2, each.detach()  # DDP averages the processes

    out = world.each(rank)
    for r in range(2):
        whole, grad, each = out[r]
        assert torch.equal(whole, rows)  # the single-process order
        assert each.item() == pytest.approx(loss.item(), rel=1e-12)
        assert torch.allclose(grad, alone.grad[r::2], rtol=1e-10, atol=1e-12)
        assert not torch.allclose(grad, alone.grad[r * 4:(r + 1) * 4])  # not the first half's


def test_which_objectives_read_the_global_batch():
    from torch import nn

    from distill.contracts.global_batch import reads_global_batch
    from distill.objectives.crd import CRD
    from distill.objectives.kd import KD
    from distill.objectives.nd import NormDirection
    from distill.objectives.prd import PRD
    from distill.registry import objectives

    marked = {name for name in objectives.names()
              if getattr(objectives.get(name).target, "relates_samples", False)}
    assert marked == {"rkd", "crd", "trg", "supcon", "itc", "itm", "dcd", "score_kd"}
    assert reads_global_batch(PRD(over="samples")) and not reads_global_batch(PRD())
    assert reads_global_batch(CRD()) and not reads_global_batch(KD())
    nd = NormDirection()
    assert not reads_global_batch(nd)  # the same widths: no adapter
    nd.adapter = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 8))
    assert reads_global_batch(nd)


def test_a_masked_mean_and_random_draws_are_those_of_the_global_batch(monkeypatch):
    import torch

    from distill.contracts import global_batch

    # draws: each process draws the whole global batch's values and keeps its rows
    torch.manual_seed(3)
    whole = torch.rand(6, 4)
    for r in range(2):
        torch.manual_seed(3)
        assert torch.equal(global_batch.uniform_rows((3, 4), r, 2), whole[r::2])
    torch.manual_seed(3)
    assert torch.equal(global_batch.uniform_rows((6, 4)), whole)  # one process: torch.rand
    # a masked mean: each process's share of the global mean, gradients as one process's
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    keep = torch.tensor([True, False, True, True, True, False])
    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    alone = (w * x)[keep].mean()
    alone.backward()
    world = ThreadWorld(2)
    monkeypatch.setattr(global_batch, "dist", world)

    def rank(r):
        mine = w.detach().clone().requires_grad_(True)
        value = global_batch.global_mean(mine * x[r::2], keep[r::2], 2)  # 3 of 4 kept vs 1 of 2
        value.backward()
        return value.detach(), mine.grad

    out = world.each(rank)
    assert (out[0][0] + out[1][0]) / 2 == pytest.approx(alone.item())  # the logged mean
    assert (out[0][1] + out[1][1]) / 2 == pytest.approx(w.grad.item())  # DDP's mean
    assert out[0][0] != pytest.approx(alone.item())  # a process's own mean is not it


def test_a_non_finite_loss_in_one_process_stops_every_process_at_that_step(tmp_path,
                                                                           monkeypatch):
    """Process 1's share of the batch makes the loss NaN, process 0's does not: both stop with
    a user error at the same step (neither waits in a collective the other never reaches)."""
    from test_engine import TINY, built

    from distill.contracts import global_batch
    from distill.errors import UserError

    f = tmp_path / "tiny.yaml"
    f.write_text(TINY)
    world = ThreadWorld(2)
    monkeypatch.setattr(global_batch, "dist", world)

    def rank(r):
        module, data = built(f, "ce-only")
        module.reads_global = [False]
        module._trainer = SimpleNamespace(world_size=2, global_rank=r, current_epoch=0,
                                          global_step=7)
        x, y, index = next(iter(data.train_dataloader()))
        if r == 1:
            x = x.clone()
            x[3] = float("nan")
        return module.batch_loss((x, y, index))

    out = world.each(rank)
    assert isinstance(out[0], UserError) and isinstance(out[1], UserError), out
    assert "non-finite in another process at epoch 0, step 7" in str(out[0])
    assert "loss term 'ce' became non-finite (nan) at epoch 0, step 7" in str(out[1])
    # both finite: both go on
    monkeypatch.setattr(global_batch, "dist", ThreadWorld(2))
    world = global_batch.dist
    assert world.each(lambda r: global_batch.on_every_rank(True)) == {0: True, 1: True}


def test_a_test_set_smaller_than_the_processes_is_refused_in_every_process():
    import torch

    from distill.data.base import DataModule, Splits
    from distill.errors import UserError

    x, y = torch.randn(3, 2), torch.tensor([0, 1, 0])
    data = DataModule(Splits(list(zip(x, y)), list(zip(x, y)), y, y, 2, (2,)), batch_size=2)
    for rank in range(4):
        data.trainer = SimpleNamespace(global_rank=rank, world_size=4)
        with pytest.raises(UserError, match="3 sample\\(s\\), fewer than the 4 processes"):
            data.val_dataloader()
    data.trainer = SimpleNamespace(global_rank=2, world_size=3)  # one sample each
    assert [b[2].tolist() for b in data.val_dataloader()] == [[2]]


def test_generation_accuracy_adds_up_every_processes_counts():
    import torch

    from distill.task_kinds.generation import Generation

    kind = Generation(tokenizer=None, answer_marker="", train_answers=[])
    kind._correct, kind._total = 1, 8  # this process: 1 of 8; the other: 3 of 7
    other = torch.tensor([3.0, 7.0], dtype=torch.float64)
    module = SimpleNamespace(device="cpu", _trainer=SimpleNamespace(
        world_size=2, strategy=SimpleNamespace(reduce=lambda t, reduce_op: t + other)))
    assert kind.validation_end(module) == {"answer_acc": round(100 * 4 / 15, 4)}


@pytest.mark.parametrize("trainer,strategy", [
    ({"devices": 2}, "ddp_find_unused_parameters_true"),
    ({"num_nodes": 2}, "ddp_find_unused_parameters_true"),
    ({"strategy": "ddp", "devices": 2}, "ddp_find_unused_parameters_true"),
    ({"strategy": "auto", "devices": 2}, "ddp_find_unused_parameters_true"),
    ({}, None), ({"devices": 1}, None)])
def test_several_processes_expect_parameters_a_step_leaves_unused(trainer, strategy):
    from distill.engine.trainer_args import trainer_args

    assert trainer_args(trainer).get("strategy") == strategy


def test_batchnorm_synchronised_across_cpu_processes_is_refused(tmp_path, capsys):
    from experiment_text import digits_pair

    from distill.cli import main

    f = tmp_path / "sync.yaml"
    f.write_text(digits_pair("s", "  - {name: ce}\n", tail="trainer: {strategy: ddp, devices: 2, "
                             "accelerator: cpu, sync_batchnorm: true}\n"))
    assert main(["validate", str(f)]) == 2
    said = capsys.readouterr()
    assert "trainer.sync_batchnorm: torch synchronises BatchNorm across processes on GPUs only" \
        in said.err + said.out
