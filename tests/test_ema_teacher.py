"""The ema teacher role: a copy of the student at the start, the moving-average formula after each
student step (network and the teacher's DINO head alike), its momentum schedule, no output cache."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from distill.config import load_experiment
from distill.errors import ConfigError
from students.mlp import mlp
from teachers.ema import EMATeacher, ema_update
from experiment_text import build_variant

DINO = """\
name: dino
seeds: [0]
data: {name: digits, batch_size: 64, labels: false, views: {name: image, count: 2, flip: false}}
teacher: {role: ema, momentum: 0.9}
student:
  net: {name: small_cnn, width: 8}
train: {epochs: 1, optimizer: {name: adamw, lr: 1.0e-2, weight_decay: 0.0}}
objectives:
  - {name: dino, out_dim: 32, hidden: 16, bottleneck: 8, student_temp: 0.1, teacher_temp: 0.04,
     center_momentum: 0.9}
variants:
  same-view: {data: {views: null}}
  dino: {}
"""


def bn_net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_ema_update_is_the_moving_average_of_parameters_and_statistics():
    teacher, student = bn_net(), bn_net()
    student(torch.randn(8, 3))  # moves the student's BatchNorm statistics and counter
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 0.75)
    for k, s in student.state_dict().items():
        if s.is_floating_point():
            assert torch.allclose(teacher.state_dict()[k], 0.75 * t0[k] + 0.25 * s), k
        else:
            assert torch.equal(teacher.state_dict()[k], s), k


def test_cosine_momentum_rises_from_m0_to_one():
    role = EMATeacher(mlp(10, (5,), hidden=[4]), momentum=0.99, schedule="cosine")
    role.plan_steps(100)
    assert role.momentum_at(0) == pytest.approx(0.99)
    assert role.momentum_at(50) == pytest.approx(0.995)
    assert role.momentum_at(100) == pytest.approx(1.0)
    assert EMATeacher(mlp(10, (5,), hidden=[4]), momentum=0.9).momentum_at(70) == 0.9


def test_an_ema_teacher_of_another_network_is_refused():
    role = EMATeacher(mlp(10, (5,), hidden=[4]))
    with pytest.raises(ConfigError, match="momentum copy of the student"):
        role.track(role.network, mlp(10, (5,), hidden=[6]))


@pytest.fixture
def experiment(tmp_path):
    f = tmp_path / "dino.yaml"
    f.write_text(DINO)
    return load_experiment(str(f))




def states_equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_teacher_and_its_head_start_as_copies_of_the_student(experiment):
    module, _ = build_variant(experiment, "dino")
    dino = module.objectives[0]
    assert states_equal(module.teacher.network, module.student)
    assert states_equal(dino.teacher_head, dino.head)
    assert not any(p.requires_grad for p in module.teacher.parameters())
    assert not any(p.requires_grad for p in dino.teacher_head.parameters())


def test_after_a_student_step_teacher_and_head_move_by_the_formula(experiment):
    module, _ = build_variant(experiment, "dino")
    dino = module.objectives[0]
    followers = [*module.teacher.network.parameters(), *dino.teacher_head.parameters()]
    students = [*module.student.parameters(), *dino.head.parameters()]
    t0 = [p.clone() for p in followers]
    with torch.no_grad():
        for p in students:
            p.add_(torch.randn_like(p))
    module.teacher.after_student_step(module.student)
    for before, after, s in zip(t0, followers, students):
        assert torch.allclose(after, 0.9 * before + 0.1 * s, atol=1e-6)
    assert int(module.teacher.updates) == 1


@pytest.mark.parametrize("variant", ["same-view", "dino"])
def test_training_moves_the_teacher_with_the_student_and_never_caches_it(experiment, variant):
    module, data = build_variant(experiment, variant)
    seen = []
    module.teacher.network.register_forward_hook(lambda m, a, o: seen.append(m.training))
    before = {k: v.clone() for k, v in module.teacher.network.state_dict().items()}
    L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=False,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              num_sanity_val_steps=0).fit(module, datamodule=data)
    assert module.teacher_cache is None
    assert seen and not any(seen)  # run in eval mode, every step
    assert int(module.teacher.updates) == 3
    assert not states_equal_dict(before, module.teacher.network.state_dict())


def states_equal_dict(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)
