"""A stage trains in deterministic mode without torch's NaN fill of new tensors, in its own
thread count, and puts every setting of the process back after it, finished or failed: a plain
stage and a continual sequence alike."""
from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from distill.config import load_experiment
from distill.continual import runner
from distill.engine import stage
from distill.engine.process_settings import ProcessSettings
from distill.engine.stage import RunPlan

STAGE = """\
name: tiny
seeds: [0]
data: {name: digits, batch_size: 64}
student:
  net: {name: mlp, hidden: [8]}
train: {epochs: 1, optimizer: {name: sgd, lr: 0.05}}
objectives: [{name: ce}]
"""
SEQUENCE = STAGE.replace("objectives:", "continual: {tasks: 2, setting: task-incremental}\n"
                                        "objectives:")
# how a stage sets the process while it trains (threads: 1 by default)
TRAINING = ProcessSettings(threads=1, deterministic=True, warn_only=False, fill=False,
                           cudnn_benchmark=False, cublas_workspace=":4096:8")
# two settings of the process before a stage, which together differ from TRAINING in every field
BEFORE = [ProcessSettings(threads=2, deterministic=False, warn_only=False, fill=True,
                          cudnn_benchmark=True, cublas_workspace=None),
          ProcessSettings(threads=3, deterministic=True, warn_only=True, fill=True,
                          cudnn_benchmark=True, cublas_workspace=":16:8")]


class Probe(Callback):
    def __init__(self, fails: bool):
        self.fails, self.seen = fails, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.empty(4096).fill_(7.0)  # its memory, freed, is the next tensor's
        filled = bool(torch.empty(4096).isnan().all())
        self.seen.append((ProcessSettings.now(), filled))
        if self.fails:
            raise RuntimeError("stopped")


def run_stage(kind: str, tmp_path, probe: Probe):
    text = STAGE if kind == "stage" else SEQUENCE
    f = tmp_path / f"{kind}.yaml"
    f.write_text(text)
    exp = load_experiment(str(f)).variants["default"]
    plan = RunPlan(fast=True, interactive=False)
    if kind == "stage":
        return stage.fit(exp, 0, tmp_path / "run", "probe", plan)
    return runner.run_sequence(exp, "default", 0, tmp_path / "run", plan,
                               record=lambda metrics, task: None, say=lambda *a: None)


@pytest.fixture
def process_put_back():
    kept = ProcessSettings.now()
    yield
    kept.put_back()


@pytest.mark.parametrize("kind", ["stage", "sequence"])
@pytest.mark.parametrize("before", BEFORE)
@pytest.mark.parametrize("fails", [False, True])
def test_a_stage_sets_the_process_while_it_trains_and_puts_it_back(
        kind, before, fails, tmp_path, monkeypatch, process_put_back):
    probe = Probe(fails)
    module = stage if kind == "stage" else runner
    making = module.stage_trainer
    monkeypatch.setattr(module, "stage_trainer", lambda *a, **k: (
        t := making(*a, **k), t.callbacks.append(probe))[0])
    before.put_back()
    assert ProcessSettings.now() == before
    if fails:
        with pytest.raises(RuntimeError, match="stopped"):
            run_stage(kind, tmp_path, probe)
    else:
        run_stage(kind, tmp_path, probe)
    assert probe.seen and all(seen == (TRAINING, False) for seen in probe.seen)
    assert ProcessSettings.now() == before
