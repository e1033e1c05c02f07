"""The test pass the module takes itself at an epoch's end, and the epoch's values it hands to
the callbacks and loggers without Lightning's result collection: the same numbers, rows and
modes as Lightning's evaluation loop and ``log``, and Lightning's loop wherever something listens
to its hooks."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loops.evaluation_loop import _EvaluationLoop

from dataset_files import write_cifar10
from test_acceleration import cifar_run

from distill.config import load_experiment
from distill.data.batch_groups import BatchGroup
from distill.engine.build import seeded
from distill.engine.epoch_record import as_logged, mean_over_processes
from distill.engine.module import DistillationModule
from distill.engine.stage import RunPlan, fit
from run_logs import log_rows
from test_engine import built, trainer
from test_optimiser_steps import counting, tiny_file

# a student with dropout (its mode decides its numbers), an EMA teacher evaluated beside it
MUTUAL = """\
name: own
seeds: [0]
data: {name: digits, batch_size: 64}
teacher: {role: mutual, net: {name: mlp, hidden: [48], dropout: 0.3}}
student: {net: {name: mlp, hidden: [32], dropout: 0.3}}
train: {epochs: 3, validate_every: 2, optimizer: {name: sgd, lr: 0.05}, schedule: cosine}
objectives: [{name: ce}, {name: kd, temperature: 4}]
"""


class Modes(Callback):
    """Every submodule's mode at each epoch's start and end."""

    def __init__(self):
        self.start, self.end = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.start.append({n: m.training for n, m in pl_module.named_modules()})

    def on_train_epoch_end(self, trainer, pl_module):
        self.end.append({n: m.training for n, m in pl_module.named_modules()})


def run(tmp_path, monkeypatch, name: str, lightnings: bool):
    """The MUTUAL file trained through ``fit``: the module's own test pass, or (``lightnings``)
    Lightning's loop; returns the module, the run folder, the loop's runs and the modes."""
    loops = []
    original = _EvaluationLoop.run
    monkeypatch.setattr(_EvaluationLoop, "run", lambda self: (loops.append(1), original(self))[1])
    if lightnings:
        monkeypatch.setattr(DistillationModule, "validates_itself", lambda self: False)
    modes = Modes()
    from distill.engine import stage

    making = stage.stage_trainer
    monkeypatch.setattr(stage, "stage_trainer", lambda *a, **k: (
        t := making(*a, **k), t.callbacks.append(modes))[0])
    f = tmp_path / "own.yaml"
    f.write_text(MUTUAL)
    seeded(0)
    exp = load_experiment(str(f)).variants["default"]
    _, module = fit(exp, 0, tmp_path / name, "t", RunPlan(interactive=False))
    monkeypatch.undo()
    return module, tmp_path / name, len(loops), modes


def test_the_modules_own_test_pass_equals_lightnings_loop(tmp_path, monkeypatch):
    own, own_dir, own_loops, own_modes = run(tmp_path, monkeypatch, "own", lightnings=False)
    loop, loop_dir, loop_loops, loop_modes = run(tmp_path, monkeypatch, "loop", lightnings=True)
    assert own.validating_itself and not loop.validating_itself
    assert own_loops == 0 and loop_loops == 2  # epochs 2 and 3 (validate_every: 2, the last)
    assert own.history == loop.history and len(own.history) == 2
    assert own.teacher_history == loop.teacher_history and len(own.teacher_history) == 2
    # the modes put back (dropout on in training, off in the test pass): the same weights after
    for (name, a), b in zip(own.state_dict().items(), loop.state_dict().values()):
        assert torch.equal(a, b), name
    assert own_modes.end == own_modes.start == loop_modes.end
    # the gradients released before the test pass, as Lightning's loop releases them
    assert all(p.grad is None for p in own.parameters())
    assert own_modes.end[0]["student"] and own_modes.end[0]["teacher"]
    assert (own_dir / "logs" / "metrics.csv").read_text() == \
        (loop_dir / "logs" / "metrics.csv").read_text()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (own_dir, loop_dir))
    for key in ("top1", "top1_best", "history", "teacher_metrics"):
        assert a[key] == b[key], key


@pytest.mark.parametrize("grouped", [True, False])
def test_the_csv_rows_are_lightnings(tmp_path, monkeypatch, grouped):
    """Per epoch a row of the test set's values, then one of the training means, at Lightning's
    logging step: its steps taken before the epoch's last (one a group of batches, else one a
    batch: 23 an epoch), the values as float32 numbers."""
    if not grouped:
        monkeypatch.setattr(DistillationModule, "groups_batches", lambda self: False)
    f = tiny_file(tmp_path)
    exp = load_experiment(str(f)).variants["ce-only"]
    seeded(0)
    _, module = fit(exp, 0, tmp_path / "run", "t", RunPlan(interactive=False))
    assert module.validating_itself == grouped
    rows = log_rows(tmp_path / "run")
    steps_an_epoch = 1 if grouped else 23
    assert [(r["epoch"], r["step"]) for r in rows] == [
        (str(e), str((e + 1) * steps_an_epoch - 1)) for e in (0, 0, 1, 1)]
    assert [bool(r["val/acc"]) for r in rows] == [True, False, True, False]
    assert [bool(r["train/loss"]) for r in rows] == [False, True, False, True]
    for e in (0, 1):
        assert float(rows[2 * e]["val/acc"]) == torch.tensor(module.history[e]).item()
    # the progress bar shows the headline; the callbacks see every value
    assert module.trainer.progress_bar_metrics == {"val/acc": float(rows[2]["val/acc"])}
    assert set(module.trainer.callback_metrics) == {"val/acc", "train/loss", "train/ce"}


def test_values_are_logged_as_float32_and_averaged_over_processes():
    logged = as_logged({"a": 21.6, "b": torch.tensor(0.5, dtype=torch.float64, requires_grad=True)})
    assert logged["a"].item() == 21.600000381469727 and logged["a"].dtype == torch.float32
    assert logged["b"].dtype == torch.float32 and not logged["b"].requires_grad
    alone = SimpleNamespace(world_size=1)
    assert mean_over_processes(alone, logged) is logged
    other = torch.tensor([2.4, 1.5])  # the other process's values

    def reduce(t, reduce_op):  # Lightning's mean over the processes, as sync_dist takes it
        assert reduce_op == "mean"
        return (t + other) / 2

    two = SimpleNamespace(world_size=2, strategy=SimpleNamespace(reduce=reduce))
    means = mean_over_processes(two, logged)
    assert list(means) == ["a", "b"]
    assert means["a"].item() == pytest.approx(12.0) and means["b"].item() == pytest.approx(1.0)


def test_the_test_loader_is_made_once_a_fit_as_lightnings_loop_makes_it(tmp_path, monkeypatch):
    """Its loader workers, if any, live across the epochs."""
    from distill.data.base import DataModule

    made = []
    making = DataModule.val_dataloader
    monkeypatch.setattr(DataModule, "val_dataloader", lambda self: (made.append(1),
                                                                    making(self))[1])
    f = tiny_file(tmp_path, "train: {epochs: 3, optimizer: {name: sgd, lr: 0.05}}")
    seeded(0)
    _, module = fit(load_experiment(str(f)).variants["ce-only"], 0, tmp_path / "run", "t",
                    RunPlan(interactive=False))
    assert module.validating_itself and len(module.history) == 3 and len(made) == 1


@pytest.mark.parametrize("what", [None, "callback", "objective", "module", "batch end",
                                  "profiler", "limit"])
def test_lightnings_loop_tests_where_something_listens_to_its_hooks(tmp_path, what):
    """A callback or an objective with a hook of the evaluation loop, the module with one of
    its own, a callback acting after the epoch's last step, a profiler (Lightning's steps) or a
    limit of the test batches (Lightning counts them): Lightning's loop, which calls each; else
    (None) the module's own pass."""
    seeded(0)
    module, data = built(tiny_file(tmp_path), "ce-only")
    callbacks, args = [], {}
    if what == "callback":
        callbacks.append(type("Listens", (Callback,), {
            "on_validation_end": lambda self, trainer, pl_module: None})())
    elif what == "objective":
        counts = counting("on_validation_epoch_start")
        module.objectives.append(counts)
    elif what == "module":
        module.on_validation_start = lambda: None
    elif what == "batch end":  # Lightning validates after it; the module's own pass, before
        callbacks.append(type("AfterStep", (Callback,), {
            "on_train_batch_end": lambda self, *args: None})())
    elif what == "profiler":
        args["profiler"] = "simple"
    elif what == "limit":
        args["limit_val_batches"] = 1
    trainer(callbacks=callbacks, **args).fit(module, datamodule=data)
    assert module.validating_itself == (what is None)
    if what == "objective":
        assert counts.calls == 1


@pytest.mark.parametrize("owner", ["module", "data module"])
def test_a_hook_before_the_transfer_sees_each_test_batch_as_in_lightnings_loop(
        tmp_path, monkeypatch, owner):
    """``on_before_batch_transfer`` of the module or of the data module: the module's own pass
    calls it on each test batch (group), with the trainer validating, and measures what it
    returns (here the test inputs zeroed), as Lightning's loop does."""
    from distill.engine.lightning_data import LightningData

    f = tiny_file(tmp_path, "train: {epochs: 2, optimizer: {name: sgd, lr: 0.05}}")
    calls, loops, histories = {}, [], {}
    original = _EvaluationLoop.run
    for lightnings in (False, True):
        seen = calls[lightnings] = []

        def hook(self, batch, dataloader_idx, seen=seen):
            if not self.trainer.validating:
                return batch
            group = batch if isinstance(batch, BatchGroup) else [batch]
            seen.append([b[0].shape for b in group])
            zeroed = [(torch.zeros_like(b[0]), *b[1:]) for b in group]
            return BatchGroup(zeroed) if isinstance(batch, BatchGroup) else zeroed[0]
        with monkeypatch.context() as patch:
            patch.setattr(DistillationModule if owner == "module" else LightningData,
                          "on_before_batch_transfer", hook)
            patch.setattr(_EvaluationLoop, "run", lambda self: (loops.append(lightnings),
                                                                 original(self))[1])
            if lightnings:
                patch.setattr(DistillationModule, "validates_itself", lambda self: False)
            seeded(0)
            _, module = fit(load_experiment(str(f)).variants["ce-only"], 0,
                            tmp_path / f"run{lightnings}", "t", RunPlan(interactive=False))
            histories[lightnings] = module.history
    assert loops == [True, True]  # Lightning's loop tested only the second run's epochs
    assert calls[False] == calls[True] and len(calls[False]) == 2  # one group an epoch
    # shown zeros, the student gives one class for every test image: about 10% of digits
    assert histories[False] == histories[True] and max(histories[False]) < 20


def test_the_test_batches_are_the_test_sets_unaugmented_in_the_runs_memory_format(
        tmp_path, monkeypatch):
    """CIFAR's crop and flip are for training batches, before and after a test pass;
    channels_last is for test batches too. The module's own pass and Lightning's loop alike."""
    write_cifar10(tmp_path / "data", n=16)
    f = tmp_path / "c.yaml"
    f.write_text(cifar_run(tmp_path / "data", "channels_last: true\n"))
    exp = load_experiment(str(f)).variants["default"]
    measuring = DistillationModule.validation_step
    trained = []
    for lightnings in (False, True):
        seen = []
        with monkeypatch.context() as patch:
            if lightnings:
                patch.setattr(DistillationModule, "validates_itself", lambda self: False)
            patch.setattr(DistillationModule, "validation_step", lambda self, batch, i: (
                seen.extend(b[0] for b in (batch if isinstance(batch, BatchGroup) else [batch])),
                measuring(self, batch, i)))
            seeded(0)
            _, module = fit(exp, 0, tmp_path / f"run{lightnings}", "t",
                            RunPlan(interactive=False))
        assert module.validating_itself != lightnings
        data = module.trainer.datamodule
        assert data.splits.augment is not None
        test_set = [x for x, _, _ in data.test_dataloader()]
        assert len(seen) == 2 * len(test_set) == 2  # one batch, both epochs
        for x, expected in zip(seen, test_set * 2):
            assert torch.equal(x, expected) and x.is_contiguous(memory_format=torch.channels_last)
        trained.append(module.student.state_dict())
    for name, value in trained[0].items():  # the second epoch's batches augmented alike
        assert torch.equal(value, trained[1][name]), name
