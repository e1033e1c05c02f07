"""Engine overhead: the workbench's training of the quickstart student against a plain PyTorch
loop doing the same work (same data, network, optimiser, schedule, epochs, per-epoch test pass).

    .venv/bin/python benchmarks/engine_overhead.py [--epochs 30] [--repeats 3]

Prints, median over ``--repeats``, the seconds of each for the whole run (making the dataset and
the network, training, the test passes; the workbench also writes its checkpoints, logs and
records; a second workbench row writes its checkpoint at every epoch) and for the training
alone (the workbench's ``trainer.fit``, its ``train_seconds``; the plain loop's epochs), and their
ratios to the plain loop: the median over the repeats of each repeat's ratio to the plain loop
run just before it, and the range of the training's. A last row trains the same way with
the simplest LightningModule and Trainer: Lightning's own cost per step, which any engine on its
Trainer pays. Run by hand, results in the README; never part of the tests.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from distill.config import load_experiment
from distill.engine.allocator import keep_freed_memory
from distill.engine.build import build_data, build_terms, seeded
from distill.engine.process_settings import ProcessSettings
from distill.engine.stage import RunPlan, fit
from distill.engine.trainer_args import quiet_lightning

ROOT = Path(__file__).resolve().parents[1]


def plain_loop(exp, seed: int) -> tuple[float, float]:
    """The same run written as a bare loop; returns wall seconds (whole, training)."""
    whole = time.perf_counter()
    seeded(seed)
    data = build_data(exp, seed)
    student = build_terms(exp, data, None)[0]
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, exp.train.epochs)
    started = time.perf_counter()
    for epoch in range(exp.train.epochs):
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)
        student.train()
        for x, y, _ in loader:
            logits = student(x).logits
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        student.eval()
        with torch.no_grad():
            sum((student(x).logits.argmax(1) == y).sum().item() for x, y, _ in data.val_dataloader())
    ended = time.perf_counter()
    return ended - whole, ended - started


def bare_lightning(exp, seed: int) -> tuple[float, float]:
    """The same run as the simplest LightningModule and Trainer (no callbacks, logger, checkpoint
    or progress bar): the floor any engine built on Lightning's Trainer starts from."""
    import lightning as L

    class Bare(L.LightningModule):
        def __init__(self, student):
            super().__init__()
            self.student = student

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.student(batch[0]).logits, batch[1])

        def validation_step(self, batch, batch_idx):
            (self.student(batch[0]).logits.argmax(1) == batch[1]).sum().item()

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
            return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, exp.train.epochs)]

    process = ProcessSettings.now()
    whole = time.perf_counter()
    seeded(seed)
    data = build_data(exp, seed)
    module = Bare(build_terms(exp, data, None)[0])
    trainer = L.Trainer(max_epochs=exp.train.epochs, accelerator="cpu", deterministic=True,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data)
    finally:  # Lightning leaves deterministic mode on: the next plain loop runs without
        process.put_back()
    ended = time.perf_counter()
    return ended - whole, ended - started


def engine_run(exp, seed: int, out: Path) -> tuple[float, float]:
    """One stage as ``distill run`` trains it; returns wall seconds (whole, training)."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    metrics, _ = fit(exp, seed, out, "bench", RunPlan(interactive=False))
    return time.perf_counter() - started, metrics["train_seconds"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    quiet_lightning()
    torch.set_num_threads(1)
    keep_freed_memory()  # the allocator setting a stage makes, for every side from the start
    def quickstart(*overrides):
        return load_experiment(str(ROOT / "experiments" / "quickstart.yaml"),
                               [f"train.epochs={args.epochs}", *overrides],
                               ["ce-only"]).variants["ce-only"]

    exp, every_epoch = quickstart(), quickstart("checkpoint_seconds=0")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"plain PyTorch loop": [], "workbench engine": [], "  checkpoints each epoch": [],
                "bare Lightning": []}
        for i in range(args.repeats):  # in turn, so a drift of the machine's speed hits all
            runs["plain PyTorch loop"].append(plain_loop(exp, 0))
            with contextlib.redirect_stdout(io.StringIO()):
                runs["workbench engine"].append(engine_run(exp, 0, Path(tmp) / f"r{i}"))
                runs["  checkpoints each epoch"].append(
                    engine_run(every_epoch, 0, Path(tmp) / f"e{i}"))
                runs["bare Lightning"].append(bare_lightning(exp, 0))
    print(f"quickstart student, ce, {args.epochs} epochs, median of {args.repeats}:")
    print(f"  {'':24s}  whole run   training   ratio to plain (whole, training; range)")
    plain = runs["plain PyTorch loop"]
    for name, times in runs.items():
        median = [statistics.median(r[i] for r in times) for i in (0, 1)]
        # each repeat against the plain loop of the same repeat (between repeats the machine's
        # speed drifts by more than the engine's cost)
        ratios = [[t[i] / p[i] for t, p in zip(times, plain)] for i in (0, 1)]
        print(f"  {name:24s}  {median[0]:7.2f} s  {median[1]:7.2f} s   "
              f"{statistics.median(ratios[0]):5.2f}  {statistics.median(ratios[1]):5.2f}  "
              f"({min(ratios[1]):.2f}-{max(ratios[1]):.2f})")
    print("  (the engine's whole run includes its checkpoints, CSV logs, environment record and "
          "metrics;\n   its checkpoint is written once its checkpoint_seconds, 10, have passed and "
          "after the last epoch,\n   the second engine row with checkpoint_seconds: 0, every "
          "epoch)")


if __name__ == "__main__":
    main()
