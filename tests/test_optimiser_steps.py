"""The engine's optimiser steps: one per batch whether Lightning hands the batches one at a time
or in groups, and whether the module or Lightning calls backward and the optimiser, with the
file's gradient clipping, accumulation and schedule."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from distill.config import load_experiment
from distill.data.batch_groups import MOST, BatchGroups, group_size
from distill.engine.build import seeded
from distill.engine.module import STEP_HOOKS, DistillationModule
from distill.engine.term import Term
from distill.objectives.base import Objective
from distill.engine.stage import RunPlan, fit
from test_engine import TINY, built, trainer

TRAIN = "train: {epochs: 2, optimizer: {name: sgd, lr: 0.05}}"


def tiny_file(tmp_path, train: str = TRAIN, extra: str = "") -> str:
    f = tmp_path / "tiny.yaml"
    f.write_text(TINY.replace(TRAIN, train) + extra)
    return f


class Seen(Callback):
    """The learning rate at each epoch's start, the gradients' norm and largest value as the
    optimiser steps (after clipping) and the number of Lightning steps, training and validating."""

    def __init__(self):
        self.lrs, self.norms, self.largest, self.lightning_steps = [], [], [], 0
        self.validation_steps = 0

    def stepping(self, pl_module):
        grads = [p.grad for p in pl_module.student.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))))
        self.largest.append(max(float(g.abs().max()) for g in grads))

    def on_train_epoch_start(self, trainer, pl_module):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lightning_steps += 1

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.validation_steps += 1


def trained(file, grouped: bool, epochs: int = 2, direct: bool = True):
    seeded(0)
    module, data = built(file, "kd")
    if not grouped:
        module.groups_batches = lambda: False
    if not direct:  # through Lightning's manual_backward and optimizer.step
        module.steps_directly = lambda: False
    seen = Seen()
    clipping = module.on_before_optimizer_step

    def clipped(optimizer):  # the gradients as the optimiser takes them
        clipping(optimizer)
        seen.stepping(module)

    module.on_before_optimizer_step = clipped
    t = trainer(max_epochs=epochs, callbacks=[seen])
    t.fit(module, datamodule=data)
    return module, t, seen


@pytest.mark.parametrize("accumulate, group", [(1, None), (2, None), (2, 3)])
def test_batches_in_groups_train_exactly_as_one_batch_a_step(tmp_path, monkeypatch, accumulate,
                                                             group):
    """Groups of a whole epoch, or (``group``) of 3 batches, 8 an epoch, across which the
    accumulation windows of 2 run."""
    from distill.engine import module as engine_module

    if group is not None:
        monkeypatch.setattr(engine_module, "GROUP_BYTES", group * 64 * (64 * 4 + 8))
    file = tiny_file(tmp_path, "train: {epochs: 2, optimizer: {name: sgd, lr: 0.05}, "
                               "schedule: cosine}",
                     f"trainer: {{accumulate_grad_batches: {accumulate}}}\n")
    one, t_one, seen_one = trained(file, grouped=False)
    grouped, t_grouped, seen_grouped = trained(file, grouped=True)
    batches = math.ceil(len(built(file)[1].train_set) / 64)  # 23 an epoch, 12 steps with 2
    steps = 2 * math.ceil(batches / accumulate)
    assert len(seen_one.norms) == len(seen_grouped.norms) == steps
    assert seen_one.lightning_steps == 2 * batches
    assert seen_grouped.lightning_steps == 2 * (math.ceil(batches / group) if group else 1)
    test_batches = math.ceil(len(built(file)[1].test_set) / 256)  # 2 of the eval batch size
    assert seen_one.validation_steps == 2 * test_batches
    assert seen_grouped.validation_steps == 2 * (1 if group is None else test_batches)
    for (name, a), b in zip(one.state_dict().items(), grouped.state_dict().values()):
        assert torch.equal(a, b), name
    assert seen_one.norms == seen_grouped.norms
    for key in ("train/loss", "train/kd", "val/acc"):
        assert float(t_one.callback_metrics[key]) == float(t_grouped.callback_metrics[key])
    assert t_one.global_step == t_grouped.global_step == steps
    assert grouped.planned_steps() == steps  # counted in batches, not Lightning steps


@pytest.mark.parametrize("grouped", [True, False])
def test_the_schedule_steps_once_an_epoch(tmp_path, grouped):
    file = tiny_file(tmp_path, "train: {epochs: 3, optimizer: {name: sgd, lr: 0.05}, "
                               "schedule: cosine}")
    _, _, seen = trained(file, grouped, epochs=3)
    assert seen.lrs == pytest.approx([0.05 * (1 + math.cos(math.pi * e / 3)) / 2
                                      for e in range(3)])


def test_the_files_gradient_clip_bounds_every_steps_gradient_norm_or_values(tmp_path):
    _, _, free = trained(tiny_file(tmp_path), grouped=True)
    assert max(free.norms) > 0.2 and max(free.largest) > 0.02
    clip = "train: {epochs: 2, optimizer: {name: sgd, lr: 0.05}, gradient_clip: %s}"
    _, _, clipped = trained(tiny_file(tmp_path, clip % 0.2), grouped=True)
    assert max(clipped.norms) <= 0.2 * (1 + 1e-5)
    assert clipped.norms[0] == pytest.approx(0.2, rel=1e-5)  # the first is clipped
    _, _, by_value = trained(tiny_file(tmp_path, clip % 0.02,
                                       "trainer: {gradient_clip_algorithm: value}\n"), grouped=True)
    assert max(by_value.largest) <= 0.02 * (1 + 1e-6) and max(by_value.norms) > 0.2


def test_accumulated_half_batches_step_as_the_whole_batch(tmp_path):
    """Two batches of 32 with ``accumulate_grad_batches: 2`` take the same steps as the batches
    of 64 they make up (the same order of samples; CE is a mean over the batch)."""
    results = {}
    for batch, accumulate, limit in ((64, 1, 3), (32, 2, 6)):
        text = TINY.replace("batch_size: 64", f"batch_size: {batch}") + (
            f"trainer: {{accumulate_grad_batches: {accumulate}, limit_train_batches: {limit}, "
            f"accelerator: cpu}}\n")
        f = tmp_path / f"b{batch}.yaml"
        f.write_text(text)
        exp = load_experiment(str(f), [], ["ce-only"]).variants["ce-only"]
        _, module = fit(exp, 0, tmp_path / f"run{batch}", "t", RunPlan(interactive=False))
        results[batch] = (module.student.state_dict(), module.trainer.global_step)
    (whole, whole_steps), (halves, half_steps) = results[64], results[32]
    assert whole_steps == half_steps == 2 * 3
    for name, value in whole.items():
        assert torch.allclose(value, halves[name], atol=1e-6), name


def test_a_group_holds_the_batches_that_fit_its_bytes_and_the_last_is_shorter():
    item = (torch.zeros(10), torch.tensor(1))  # 40 + 8 bytes a sample
    assert group_size(item, 4, 48 * 4 * 3) == 3
    assert group_size(item, 4, 10) == 1  # a batch larger than the budget: one a step
    assert group_size(item, 1, 1 << 30) == MOST
    nested = ((torch.zeros(3, 8, 8), torch.zeros(5, dtype=torch.long)), 1, torch.tensor(0))
    assert group_size(nested, 2, (3 * 64 * 4 + 5 * 8 + 8) * 2 * 4) == 4  # every tensor counted
    groups = BatchGroups(list(range(7)), 3)
    assert len(groups) == 3 and groups.batches == 7
    assert [list(g) for g in groups] == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("accumulate, clip, algorithm", [(1, 0.2, "norm"), (2, 0.2, "norm"),
                                                          (1, 0.02, "value")])
def test_steps_the_module_takes_equal_lightnings_own(tmp_path, accumulate, clip, algorithm):
    """Backward and the (clipped) step called by the module, and through Lightning's
    manual_backward and optimizer.step: the same weights, gradients, terms and step count."""
    file = tiny_file(tmp_path, "train: {epochs: 2, optimizer: {name: sgd, lr: 0.05}, "
                               f"schedule: cosine, gradient_clip: {clip}}}",
                     f"trainer: {{accumulate_grad_batches: {accumulate}, "
                     f"gradient_clip_algorithm: {algorithm}}}\n")
    direct, t_direct, seen_direct = trained(file, grouped=True)
    lightnings, t_lightnings, seen_lightnings = trained(file, grouped=True, direct=False)
    assert direct.direct and not lightnings.direct
    clipped = seen_direct.norms[0] if algorithm == "norm" else max(seen_direct.largest)
    assert clipped == pytest.approx(clip, rel=1e-5)
    for (name, a), b in zip(direct.state_dict().items(), lightnings.state_dict().values()):
        assert torch.equal(a, b), name
    assert seen_direct.norms == seen_lightnings.norms
    assert seen_direct.largest == seen_lightnings.largest
    for key in ("train/loss", "train/kd", "val/acc"):
        assert float(t_direct.callback_metrics[key]) == float(t_lightnings.callback_metrics[key])
    batches = math.ceil(len(built(file)[1].train_set) / 64)
    assert t_direct.global_step == t_lightnings.global_step == 2 * math.ceil(batches / accumulate)
    assert t_direct.fit_loop.state_dict() == t_lightnings.fit_loop.state_dict()  # checkpointed


def counting(hook: str) -> Objective:
    """An objective that adds nothing to the loss and counts the calls of its ``hook``."""
    def counted(self, *args, **kwargs):
        self.calls += 1

    def forward(self, step):
        return step.student.logits.sum() * 0

    cls = type("Counts", (Objective,), {"registered_name": "counts", hook: counted,
                                        "forward": forward})
    objective = cls()
    objective.calls = 0
    return objective


def fit_with(tmp_path, objective: Objective) -> DistillationModule:
    seeded(0)
    module, data = built(tiny_file(tmp_path), "ce-only")
    module.terms.append(Term("counts", objective, 1.0))
    module.objectives.append(objective)
    trainer(max_epochs=1).fit(module, datamodule=data)
    return module


@pytest.mark.parametrize("hook, batches", [("on_train_batch_end", 23),
                                           ("on_validation_batch_end", 2)])
def test_an_objective_with_a_hook_at_every_batch_sees_every_batch(tmp_path, hook, batches):
    counts = counting(hook)
    module = fit_with(tmp_path, counts)
    assert counts.calls == batches
    assert module.trainer.num_training_batches == 23  # one batch a Lightning step
    assert module.trainer.num_val_batches == [2]


@pytest.mark.parametrize("hook", STEP_HOOKS)
def test_an_objective_with_a_hook_around_backward_or_the_step_sees_every_step(tmp_path, hook):
    counts = counting(hook)
    module = fit_with(tmp_path, counts)
    assert not module.direct and counts.calls == module.epoch_batches() == 23


@pytest.mark.parametrize("where", ["class", "instance"])
def test_lightning_calls_backward_when_the_module_has_a_hook_around_it(tmp_path, where):
    calls = []
    module, data = built(tiny_file(tmp_path), "ce-only")
    if where == "class":
        module.__class__ = type("Hooked", (DistillationModule,),
                                {"on_after_backward": lambda self: calls.append(1)})
    else:
        module.on_after_backward = lambda: calls.append(1)
    trainer(max_epochs=1).fit(module, datamodule=data)
    assert not module.direct and len(calls) == 23


@pytest.mark.parametrize("decision, args", [
    *(("groups_batches", args) for args in (dict(limit_train_batches=5), dict(limit_val_batches=1),
                                            dict(limit_val_batches=0.5), dict(max_steps=3),
                                            dict(overfit_batches=2))),
    *(("steps_directly", args) for args in (dict(profiler="simple"), dict(precision="bf16-mixed"),
                                            dict(strategy="ddp", devices=2, accelerator="cpu")))])
def test_lightning_keeps_the_steps_it_counts_or_wraps(tmp_path, decision, args):
    """One batch a Lightning step where Lightning counts its steps (its limits, max_steps,
    overfit_batches); Lightning's backward and step under a profiler, mixed precision or DDP."""
    module, _ = built(tiny_file(tmp_path), "ce-only")
    module.trainer = trainer()
    assert getattr(module, decision)()
    module.trainer = trainer(**args)
    assert not getattr(module, decision)()


class Automatic(L.LightningModule):
    """The reference: a student trained on CE by Lightning's automatic optimisation (its
    clipping, accumulation and epoch schedule), with the engine module's optimiser and
    schedule."""

    def __init__(self, engine: DistillationModule):
        super().__init__()
        self.engine = engine

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.engine.student(batch[0]).logits, batch[1])

    def configure_optimizers(self):
        return self.engine.configure_optimizers()


@pytest.mark.parametrize("accumulate", [1, 3])
def test_the_engine_steps_as_lightnings_automatic_optimisation(tmp_path, accumulate):
    """The engine's own steps (clipped, accumulated, the schedule after each epoch) against
    Lightning's automatic loop, on the same data, student and initial weights."""
    file = tiny_file(tmp_path, "train: {epochs: 3, optimizer: {name: sgd, lr: 0.05, momentum: "
                               "0.9}, schedule: cosine, gradient_clip: 0.2}",
                     f"trainer: {{accumulate_grad_batches: {accumulate}}}\n")
    seeded(0)
    engine, data = built(file, "ce-only")
    engine_trainer = trainer(max_epochs=3)
    engine_trainer.fit(engine, datamodule=data)
    seeded(0)
    reference = Automatic(built(file, "ce-only")[0])
    initial = {k: v.clone() for k, v in reference.engine.student.state_dict().items()}
    reference_trainer = trainer(max_epochs=3, gradient_clip_val=0.2,
                                accumulate_grad_batches=accumulate)
    reference_trainer.fit(reference, datamodule=built(file, "ce-only")[1])
    assert engine.direct and engine_trainer.global_step == reference_trainer.global_step
    trained_student = reference.engine.student.state_dict()
    for name, value in engine.student.state_dict().items():
        assert torch.allclose(value, trained_student[name], atol=1e-6), name
        assert not torch.allclose(value, initial[name], atol=1e-3), name  # trained


EMA = """\
name: ema
seeds: [0]
data: {name: digits, batch_size: 64}
teacher: {role: ema, momentum: 0.9, schedule: cosine}
student: {net: {name: mlp, hidden: [32]}}
train: {epochs: 2, optimizer: {name: sgd, lr: 0.05}}
objectives: [{name: ce}, {name: kd, temperature: 4}]
trainer: {accumulate_grad_batches: 2}
"""


def test_an_ema_teacher_plans_its_momentum_over_the_optimiser_steps_taken(tmp_path):
    """Its cosine momentum reaches 1 at the last step: the steps planned are the steps taken,
    counted in batches (23 an epoch, in one group) with accumulation (12 steps an epoch)."""
    f = tmp_path / "ema.yaml"
    f.write_text(EMA)
    seeded(0)
    exp = load_experiment(str(f)).variants["default"]
    _, module = fit(exp, 0, tmp_path / "run", "t", RunPlan(interactive=False))
    assert module.trainer.num_training_batches == 1  # the epoch in one Lightning step
    assert int(module.teacher.updates) == module.teacher.total_steps == 2 * 12
