"""The shared training loop: teacher handling, weighting, logging, skipping and re-running."""
from __future__ import annotations

import json
import sqlite3

import lightning as L
import pytest
import torch

from distill.cli import main
from distill.config import load_experiment
from distill.engine.build import build_data, build_module, build_teacher
from distill.engine.term import Term
from distill.engine.progress import EpochLine
from distill.errors import UserError
from distill.objectives.base import Objective

TINY = """\
name: tiny
seeds: [0]
data: {name: digits, batch_size: 64}
teacher:
  role: frozen
  net: {name: small_cnn, width: 8}
  train: {epochs: 2, optimizer: {name: adamw, lr: 0.01}}
student:
  net: {name: mlp, hidden: [32]}
train: {epochs: 2, optimizer: {name: sgd, lr: 0.05}}
objectives:
  - {name: ce}
  - {name: kd, temperature: 4}
variants:
  ce-only: {objectives: [{name: ce}]}
  kd: {}
"""


@pytest.fixture
def tiny(tmp_path):
    f = tmp_path / "tiny.yaml"
    f.write_text(TINY)
    return f


def trainer(**kw):
    return L.Trainer(max_epochs=kw.pop("max_epochs", 1), logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, **kw)


def built(tiny, variant="kd", teacher_weights=None):
    exp = load_experiment(str(tiny)).variants[variant]
    data = build_data(exp, 0)
    teacher = build_teacher(exp, data, teacher_weights)
    return build_module(exp, data, teacher), data


def test_a_frozen_teacher_stays_in_eval_mode_gets_no_gradient_and_is_not_optimised(tiny):
    module, data = built(tiny)
    before = {k: v.clone() for k, v in module.teacher.network.state_dict().items()}
    modes = []
    module.teacher.network.register_forward_hook(lambda m, a, o: modes.append(m.training))
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    trainer().fit(module, datamodule=data)
    assert modes and not any(modes)
    assert all(not p.requires_grad for p in module.teacher.parameters())
    after = module.teacher.network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "BatchNorm statistics moved"
    assert not optimised & {id(p) for p in module.teacher.parameters()}
    assert {id(p) for p in module.student.parameters()} <= optimised


def test_the_teacher_is_not_run_when_no_objective_needs_it(tiny):
    module, data = built(tiny, "ce-only")
    calls = []
    module.teacher.network.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    trainer(max_epochs=2).fit(module, datamodule=data)
    assert calls == []


def test_a_frozen_teacher_on_unaugmented_data_runs_once_per_sample(tiny):
    module, data = built(tiny, "kd")
    seen = []
    module.teacher.network.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[0]))
    trainer(max_epochs=3).fit(module, datamodule=data)
    assert sum(seen) == len(data.train_set)
    x, _, index = next(iter(data.train_dataloader()))
    with torch.no_grad():
        direct = module.teacher(x).logits
    assert torch.allclose(module.teacher_cache(index).logits, direct, atol=1e-5)


class Explodes(Objective):
    registered_name = "explodes"

    def forward(self, step):
        return {"fine": torch.tensor(1.0), "boom": torch.tensor(float("nan"))}


def test_a_non_finite_term_stops_the_run_naming_the_term(tiny):
    module, data = built(tiny, "ce-only")
    module.terms.append(Term("explodes", Explodes(), 1.0))
    with pytest.raises(UserError, match="'explodes/boom' became non-finite"):
        trainer().fit(module, datamodule=data)


def test_a_sum_that_overflows_is_named_even_when_every_term_is_finite(tiny):
    module, data = built(tiny, "ce-only")
    module.terms.append(Term("huge", Huge(), 1.0))
    batch = next(iter(data.train_dataloader()))
    with pytest.raises(UserError, match="loss term 'loss' became non-finite \\(inf\\) at epoch 0"):
        module.batch_loss(batch)


class Huge(Objective):
    registered_name = "huge"

    def forward(self, step):
        return {"a": torch.tensor(3e38), "b": torch.tensor(3e38)}  # finite each, not their sum


def test_term_weight_warms_up_linearly_from_zero_at_the_first_epoch():
    # the ND authors' ramp: min(1, epoch / N), epochs counted from 0
    term = Term("kd", Explodes(), weight=3.5, warmup_epochs=20)
    assert term.weight_at(0) == 0.0
    assert term.weight_at(10) == pytest.approx(3.5 * 10 / 20)
    assert term.weight_at(19) == pytest.approx(3.5 * 19 / 20)
    assert term.weight_at(20) == term.weight_at(100) == 3.5
    assert Term("ce", Explodes(), 2.0).weight_at(0) == 2.0


def test_the_files_weight_and_warmup_reach_the_sum(tiny, tmp_path):
    f = tmp_path / "warm.yaml"
    f.write_text(tiny.read_text().replace("{name: kd, temperature: 4}",
                                          "{name: kd, temperature: 4, weight: 3.0, warmup_epochs: 2}"))
    module, _ = built(f, "kd")
    kd = next(t for t in module.terms if t.label == "kd")
    assert [kd.weight_at(e) for e in (0, 1, 2)] == [0.0, 1.5, 3.0]


def test_only_the_outputs_an_objective_reads_are_computed(tiny):
    module, data = built(tiny, "ce-only")
    calls = []
    module.student.register_forward_hook(lambda *_: calls.append("student"))
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    step = module.make_step((x, y, torch.arange(4)))
    assert calls == [] and not step.computed("student")
    assert step.student.logits.shape == (4, 10) and calls == ["student"]
    step.student  # read again: no second forward pass
    assert calls == ["student"] and step.teacher is None  # ce-only: no objective reads the teacher


def test_every_term_and_the_total_are_logged_as_means_over_the_epochs_samples(tiny, tmp_path):
    module, data = built(tiny, "kd")
    steps = []  # (total, batch size) of every step
    step = module.batch_loss

    def recorded(batch, epoch_ends=False):
        total = step(batch, epoch_ends)
        steps.append((total.item(), len(batch[1])))
        return total

    module.batch_loss = recorded
    t = trainer(max_epochs=1)
    t.fit(module, datamodule=data)
    logged = set(t.callback_metrics)
    assert {"train/ce", "train/kd", "train/loss", "val/acc"} <= logged
    total = t.callback_metrics["train/loss"]
    assert total == pytest.approx(float(t.callback_metrics["train/ce"]
                                        + t.callback_metrics["train/kd"]), rel=1e-4)
    sizes = {size for _, size in steps}
    assert len(sizes) == 2  # a last, smaller batch: the mean is over samples, not steps
    expected = sum(v * n for v, n in steps) / sum(n for _, n in steps)
    assert float(total) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("limits", [{"limit_train_batches": 3}, {"max_steps": 5}])
def test_an_epoch_of_fewer_batches_logs_the_mean_of_those_it_ran(tiny, limits):
    module, data = built(tiny, "ce-only")
    totals = []
    step = module.batch_loss

    def recorded(batch, epoch_ends=False):
        total = step(batch, epoch_ends)
        totals.append(total.item())
        return total

    module.batch_loss = recorded
    t = trainer(max_epochs=1, **limits)
    t.fit(module, datamodule=data)
    count = limits.get("limit_train_batches", limits.get("max_steps"))
    assert len(totals) == count
    assert float(t.callback_metrics["train/loss"]) == pytest.approx(sum(totals) / count, rel=1e-5)


def test_epoch_means_weigh_by_batch_size_and_count_each_name_where_it_was_added():
    from distill.engine.epoch_means import EpochMeans

    means = EpochMeans()
    means.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0)}, 3)
    means.add({"a": torch.tensor(3.0)}, 1)
    assert {k: float(v) for k, v in means.means().items()} == {"a": 1.5, "b": 4.0}
    assert means.means() == {}  # a new epoch


def test_plain_output_prints_one_line_per_epoch(tiny, capsys):
    module, data = built(tiny, "ce-only")
    trainer(max_epochs=2, callbacks=[EpochLine("ce s0")]).fit(module, datamodule=data)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("[ce s0]")]
    assert len(lines) == 2 and "epoch 2/2" in lines[1] and "val/acc" in lines[1]


def test_run_records_skips_finished_runs_and_compare_prints_the_table(tiny, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", str(tiny), "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "teacher: training" in first and "kd seed 0: training" in first
    for variant in ("ce-only", "kd"):
        m = json.loads((out / "tiny" / variant / "seed0" / "metrics.json").read_text())
        assert len(m["history"]) == 2 and m["top1"] == m["history"][-1]
        assert (out / "tiny" / variant / "seed0" / "checkpoints" / "last.ckpt").exists()
    rows = sqlite3.connect(out / "results.sqlite").execute(
        "select variant, metric from results").fetchall()
    assert {("teacher", "top1"), ("ce-only", "top1"), ("kd", "top1_best")} <= set(rows)
    mtime = (out / "tiny" / "kd" / "seed0" / "metrics.json").stat().st_mtime_ns

    assert main(["run", str(tiny), "--out", str(out)]) == 0
    again = capsys.readouterr().out
    assert "teacher: reusing" in again and "finished earlier, skipped" in again
    assert (out / "tiny" / "kd" / "seed0" / "metrics.json").stat().st_mtime_ns == mtime
    assert main(["resume", str(out / "tiny")]) == 0  # what the folder records, run again
    assert "finished earlier, skipped" in capsys.readouterr().out

    assert main(["compare", str(out / "tiny"), "--format", "csv"]) == 0
    csv = capsys.readouterr().out
    assert csv.splitlines()[0].startswith("variant,role,top1_mean")
    assert [line.split(",")[0] for line in csv.splitlines()[1:]] == ["teacher", "ce-only", "kd"]


def test_a_changed_file_is_refused_in_the_old_run_folder(tiny, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", str(tiny), "--out", str(out), "--variant", "ce-only"]) == 0
    capsys.readouterr()
    tiny.write_text(TINY.replace("hidden: [32]", "hidden: [48]"))
    assert main(["run", str(tiny), "--out", str(out), "--variant", "ce-only"]) == 2
    assert "different configuration" in capsys.readouterr().err


def test_fast_mode_writes_beside_the_real_results(tiny, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", str(tiny), "--out", str(out), "--fast", "--seeds", "0"]) == 0
    assert (out / "_fast" / "results.sqlite").exists() and not (out / "results.sqlite").exists()


def tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def test_a_checkpoint_holds_each_tensor_once(tmp_path):
    from distill.engine.stage import RunPlan, fit, last_checkpoint
    from experiment_text import digits_pair

    f = tmp_path / "nd.yaml"
    f.write_text(digits_pair("once", "  - {name: ce}\n  - {name: nd}\n"))
    exp = load_experiment(str(f)).variants["default"]
    _, module = fit(exp, 0, tmp_path / "run", "nd", RunPlan(fast=True, interactive=False))
    ckpt = torch.load(last_checkpoint(tmp_path / "run"), weights_only=True)
    assert not any(key.startswith("objective:") for key in ckpt.get("callbacks", {}))
    # the frozen teacher is rebuilt from its file: a digest stands in for its tensors
    model = tensor_bytes({k: v for k, v in module.state_dict().items()
                          if not k.startswith("teacher.")})
    assert module.teacher is not None and tensor_bytes(ckpt["state_dict"]) == model
    assert ckpt["teacher_digest"] == module.teacher_digest
    # everything else: optimiser state (momentum buffers), the generators' state and
    # whatever small state the callbacks keep
    assert tensor_bytes(ckpt["callbacks"]) <= 16
    assert tensor_bytes(ckpt) - model == tensor_bytes(ckpt["optimizer_states"]) + \
        tensor_bytes(ckpt["rng_state"]) + tensor_bytes(ckpt["callbacks"])


def test_validate_every_measures_each_nth_epoch_and_the_last(tmp_path, capsys):
    from distill.engine.validation_schedule import validates

    assert [e for e in range(7) if validates(e, 3, 7)] == [2, 5, 6]
    assert [e for e in range(7) if validates(e, 1, 7)] == list(range(7))
    f = tmp_path / "every.yaml"
    f.write_text(TINY.split("teacher:")[0] + "student:\n  net: {name: mlp, hidden: [32]}\n"
                 "train: {epochs: 4, validate_every: 3, optimizer: {name: sgd, lr: 0.05}}\n"
                 "objectives: [{name: ce}]\n")
    assert main(["run", str(f), "--out", str(tmp_path / "runs")]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("[default s0]")]
    assert ["val/acc" in line for line in lines] == [False, False, True, True]
    m = json.loads((tmp_path / "runs" / "tiny" / "default" / "seed0" / "metrics.json").read_text())
    assert m["epochs"] == 4 and len(m["history"]) == 2 and m["top1"] == m["history"][-1]


def epoch_start_checkpoints(tmp_path, text: str, seconds_an_epoch: float | None = None):
    """The epoch held by the stage's checkpoint at each epoch's start and after the fit, and the
    module; ``seconds_an_epoch``: the checkpoint's clock moves that much an epoch."""
    from lightning.pytorch.callbacks import Callback

    from distill.engine.epoch_checkpoint import EpochCheckpoint
    from distill.engine.stage import RunPlan, checkpoint_epoch, last_checkpoint, stage_trainer

    f = tmp_path / "every.yaml"
    f.write_text(TINY.split("teacher:")[0] + "student:\n  net: {name: mlp, hidden: [32]}\n"
                 + text + "objectives: [{name: ce}]\n")
    exp = load_experiment(str(f)).variants["default"]
    run = tmp_path / "run"
    seen = []

    class Probe(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            last = last_checkpoint(run)
            seen.append(checkpoint_epoch(last) if last.exists() else None)

    data = build_data(exp, 0)
    module = build_module(exp, data, None)
    t = stage_trainer(exp, run, "probe", RunPlan(fast=False, interactive=False))
    if seconds_an_epoch is not None:
        checkpoints = next(c for c in t.callbacks if isinstance(c, EpochCheckpoint))
        checkpoints.clock = lambda: seconds_an_epoch * len(seen)  # epochs started
    t.callbacks.append(Probe())
    t.fit(module, datamodule=data)
    return seen + [checkpoint_epoch(last_checkpoint(run))], module


def test_epochs_that_do_not_validate_still_write_their_checkpoint(tmp_path):
    seen, module = epoch_start_checkpoints(
        tmp_path, "train: {epochs: 3, validate_every: 3, optimizer: {name: sgd, lr: 0.05}}\n"
                  "checkpoint_seconds: 0\n")
    assert len(module.history) == 1  # measured once, after the last epoch
    assert seen == [None, 0, 1, 2]  # yet each epoch left its checkpoint


@pytest.mark.parametrize("seconds, epoch, written", [
    ("", 0.5, [None, None, None, None, 3]), ("checkpoint_seconds: 10\n", 6.0, [None, None, 1, 1, 3]),
    ("checkpoint_seconds: 5\n", 6.0, [None, 0, 1, 2, 3])])
def test_a_checkpoint_is_written_once_its_seconds_passed_and_after_the_last_epoch(
        tmp_path, seconds, epoch, written):
    """Epochs of 6 s: with 10 s between checkpoints the second and the last write one; with
    5 s each; at the default (10 s) epochs of half a second write the last one only."""
    seen, _ = epoch_start_checkpoints(
        tmp_path, "train: {epochs: 4, optimizer: {name: sgd, lr: 0.05}}\n" + seconds, epoch)
    assert seen == written


def test_the_first_processs_clock_decides_whether_every_process_saves(tmp_path):
    """Saving is collective: each process saves when the first one's clock says so."""
    from types import SimpleNamespace

    from distill.engine.epoch_checkpoint import EpochCheckpoint

    saved = []

    def trainer(first_says: bool):
        progress = SimpleNamespace(current=SimpleNamespace(processed=1))
        return SimpleNamespace(max_epochs=5, max_steps=-1, global_step=3, should_stop=False,
                               fit_loop=SimpleNamespace(epoch_progress=progress),
                               strategy=SimpleNamespace(broadcast=lambda due: first_says),
                               save_checkpoint=saved.append, callback_metrics={})

    EpochCheckpoint(tmp_path / "due", seconds=0).on_train_epoch_end(trainer(False), None)
    assert saved == []
    EpochCheckpoint(tmp_path / "not", seconds=1e9).on_train_epoch_end(trainer(True), None)
    assert saved == [tmp_path / "not"]


def test_the_checkpoint_interval_is_not_part_of_a_runs_configuration(tiny):
    """A run resumes under another interval: it changes when the state is saved, not a number."""
    from distill.engine.stage import resolved_config

    exp = load_experiment(str(tiny)).variants["kd"]
    other = exp.model_copy(update={"checkpoint_seconds": 0.0})
    assert resolved_config(other, 0) == resolved_config(exp, 0)
    assert "checkpoint_seconds" not in resolved_config(exp, 0)


def test_validate_every_at_its_default_leaves_the_recorded_recipe_as_it_was():
    from distill.config.schema import TrainSpec

    assert "validate_every" not in TrainSpec().model_dump()
    assert TrainSpec(validate_every=2).model_dump()["validate_every"] == 2


def test_a_run_resumes_only_against_the_teacher_weights_it_was_trained_with(tmp_path, capsys):
    from distill.engine.teacher_in_checkpoints import digest
    from experiment_text import digits_pair

    f = tmp_path / "kd.yaml"
    f.write_text(digits_pair("same", "  - {name: ce}\n  - {name: kd, temperature: 4}\n"))
    out = tmp_path / "runs"
    assert main(["run", str(f), "--out", str(out)]) == 0
    run, teacher = out / "same" / "default" / "seed0", out / "same" / "teacher" / "teacher.pt"
    first = json.loads((run / "metrics.json").read_text())
    blob = torch.load(teacher, weights_only=True)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any(k.startswith("teacher.") for k in ckpt["state_dict"])
    assert ckpt["teacher_digest"] == digest({"network.net." + k: v
                                             for k, v in blob["state_dict"].items()})
    (run / "metrics.json").unlink()  # run again: it resumes from its last checkpoint
    assert main(["run", str(f), "--out", str(out)]) == 0
    again = json.loads((run / "metrics.json").read_text())
    assert again["top1"] == first["top1"]
    capsys.readouterr()
    name = next(iter(blob["state_dict"]))
    blob["state_dict"][name] = blob["state_dict"][name] + 1e-3  # another teacher
    torch.save(blob, teacher)
    (run / "metrics.json").unlink()
    assert main(["run", str(f), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other teacher weights" in err[0], err
    assert err[0].startswith("teacher: ") and "last.ckpt" in err[0], err
    assert not (run / "metrics.json").exists()


def test_teacher_tensors_are_left_out_under_every_name_and_put_back():
    from torch import nn

    from distill.engine.teacher_in_checkpoints import digest, leave_out, put_back

    class Fixed(nn.Module):  # a teacher role whose weights come from files
        trainable, weights = False, "given"

        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 2)

    holder = nn.Module()
    holder.teacher, holder.student, holder.objective = Fixed(), nn.Linear(3, 2), nn.Module()
    holder.objective.held = holder.teacher  # an objective keeping the teacher as a submodule
    checkpoint = {"state_dict": holder.state_dict()}
    kept = digest(holder.teacher.state_dict())
    leave_out(checkpoint, holder.teacher, kept)
    assert set(checkpoint["state_dict"]) == {"student.weight", "student.bias"}
    assert checkpoint["teacher_tensors"] == {
        "teacher.net.weight": "net.weight", "teacher.net.bias": "net.bias",
        "objective.held.net.weight": "net.weight", "objective.held.net.bias": "net.bias"}
    with pytest.raises(UserError, match="other teacher weights"):
        put_back(dict(checkpoint, state_dict=dict(checkpoint["state_dict"])), holder.teacher,
                 digest({"net.weight": torch.zeros(2, 3)}), "last.ckpt")
    put_back(checkpoint, holder.teacher, kept, "last.ckpt")
    holder.load_state_dict(checkpoint["state_dict"])  # strict: every name is back


def test_seeded_sets_what_lightnings_seed_everything_sets(monkeypatch):
    """``seeded`` (without importing Lightning) leaves Python's, NumPy's and torch's generators
    and Lightning's environment exactly as ``seed_everything(seed, workers=True)`` does."""
    import os
    import random

    import numpy as np
    from lightning.fabric.utilities.seed import seed_everything

    from distill.engine.build import seeded

    def state():
        return (random.getstate(), np.random.get_state()[1].tolist(),
                torch.get_rng_state().tolist(), os.environ.get("PL_GLOBAL_SEED"),
                os.environ.get("PL_SEED_WORKERS"))

    for seed in (0, 7, 2 ** 32 - 1):
        for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
            monkeypatch.delenv(name, raising=False)
        seed_everything(seed, workers=True, verbose=False)
        expected = state()
        for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
            monkeypatch.delenv(name, raising=False)
        random.seed(1), np.random.seed(1), torch.manual_seed(1)
        seeded(seed)
        assert state() == expected
