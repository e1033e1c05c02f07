"""The dino objective: its loss equals the formula, its head is the one of the paper, the teacher
head follows the teacher role, the student starts where the paper's interpolation puts it."""
from __future__ import annotations

import math

import pytest
import torch

from distill.config import load_experiment
from students.interpolate import interpolate_init
from distill.contracts import Step
from distill.objectives.dino import dino_loss
from distill.objectives.dino_head import DinoHead
from distill.contracts import ModelOutput
from experiment_text import build_variant

RANDOM_TEACHER = """\
name: rt
seeds: [0]
data: {name: digits, batch_size: 32, labels: false}
teacher: {role: random}
student:
  net: {name: small_cnn, width: 8}
  init: {from: teacher, alpha: 1.0e-10}
train: {epochs: 1, optimizer: {name: adamw, lr: 1.0e-3, weight_decay: 0.0}}
objectives:
  - {name: dino, out_dim: 64, hidden: 32, bottleneck: 16}
variants:
  local: {}
  independent: {student: {init: {alpha: 1.0}}}
  plain: {student: {init: {from: random}}}
  centred: {objectives: [{name: dino, out_dim: 64, hidden: 32, bottleneck: 16,
                          center_momentum: 0.9, student_temp: 0.1, teacher_temp: 0.04}]}
  views: {data: {views: {name: image, count: 3, flip: false}},
          objectives: [{name: dino, out_dim: 64, hidden: 32, bottleneck: 16, global_views: 2}]}
"""


def reference_dino(zs, zt, tau_s, tau_t, center=None):
    total = 0.0
    c = center.tolist() if center is not None else [0.0] * zs.shape[1]
    for s_row, t_row in zip(zs.tolist(), zt.tolist()):
        pt = [math.exp((v - ck) / tau_t) for v, ck in zip(t_row, c)]
        pt = [p / sum(pt) for p in pt]
        log_norm = math.log(sum(math.exp(v / tau_s) for v in s_row))
        total -= sum(q * (v / tau_s - log_norm) for q, v in zip(pt, s_row))
    return total / len(zs)


@pytest.mark.parametrize("tau_s,tau_t", [(1.0, 1.0), (0.1, 0.04), (0.5, 2.0)])
@pytest.mark.parametrize("centred", [False, True])
def test_dino_loss_is_the_cross_entropy_of_the_two_softmaxes(tau_s, tau_t, centred):
    g = torch.Generator().manual_seed(1)
    zs, zt = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    center = torch.randn(7, generator=g) if centred else None
    got = dino_loss(zs.double(), zt.double(), tau_s, tau_t,
                    center.double() if centred else None).item()
    assert got == pytest.approx(reference_dino(zs, zt, tau_s, tau_t, center), rel=1e-9)


def test_centering_changes_the_loss_and_only_the_student_gets_a_gradient():
    zs = torch.randn(4, 6, requires_grad=True)
    zt = torch.randn(4, 6, requires_grad=True)
    center = torch.randn(6)
    assert dino_loss(zs, zt, 1.0, 1.0, center).item() != pytest.approx(
        dino_loss(zs, zt, 1.0, 1.0).item())
    dino_loss(zs, zt, 0.1, 0.04, center).backward()
    assert zs.grad is not None and zs.grad.abs().sum() > 0 and zt.grad is None


def test_the_head_outputs_cosines_with_unit_norm_output_weights():
    head = DinoHead(10, out_dim=50, hidden=20, bottleneck=8)
    x = torch.randn(6, 10)
    out = head(x)
    assert out.shape == (6, 50) and out.abs().max() <= 1 + 1e-6
    z = torch.nn.functional.normalize(head.mlp(x), dim=1)
    w = head.last_layer.weight
    assert torch.allclose(out, z @ (w / w.norm(dim=1, keepdim=True)).T, atol=1e-6)
    with torch.no_grad():
        w.mul_(torch.rand(50, 1) * 5 + 0.1)  # rescaling an output's weights changes nothing
    assert torch.allclose(head(x), out, atol=1e-6)
    layers = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in layers] == [(20, 10), (20, 20), (8, 20)]
    assert sum(isinstance(m, torch.nn.GELU) for m in head.mlp) == 2
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules())


def test_interpolate_init_is_the_variance_preserving_interpolation():
    teacher, student = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    fresh = {k: v.clone() for k, v in student.state_dict().items()}
    a = 0.3
    interpolate_init(student, teacher, a)
    for k, t in teacher.state_dict().items():
        expected = ((1 - a) * t + a * fresh[k]) / math.sqrt(a ** 2 + (1 - a) ** 2)
        assert torch.allclose(student.state_dict()[k], expected)


@pytest.fixture
def experiment(tmp_path):
    f = tmp_path / "rt.yaml"
    f.write_text(RANDOM_TEACHER)
    return load_experiment(str(f))




def max_gap(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))


def test_alpha_1e_10_starts_the_student_and_its_head_within_1e_6_of_the_teacher(experiment):
    module, _ = build_variant(experiment, "local")
    dino = module.objectives[0]
    assert max_gap(module.student, module.teacher.network) < 1e-6
    assert max_gap(dino.head, dino.teacher_head) < 1e-6


def test_alpha_1_is_the_students_own_independent_initialisation(experiment):
    independent, _ = build_variant(experiment, "independent")
    plain, _ = build_variant(experiment, "plain")
    for a, b in zip(independent.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)
    assert max_gap(independent.student, independent.teacher.network) > 0.1
    dino = independent.objectives[0]
    assert max_gap(dino.head, dino.teacher_head) > 0.01


def test_a_random_teachers_head_is_frozen_and_never_optimised(experiment):
    module, _ = build_variant(experiment, "local")
    dino = module.objectives[0]
    optimizer = module.configure_optimizers()
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all(not p.requires_grad for p in dino.teacher_head.parameters())
    assert not optimised & {id(p) for p in dino.teacher_head.parameters()}
    assert {id(p) for p in dino.head.parameters()} <= optimised


def outputs(features: torch.Tensor) -> ModelOutput:
    return ModelOutput(features=features)


def step_with(student, teacher, student_views=None, teacher_views=None, epoch=0):
    return Step(inputs=torch.zeros(1), labels=torch.zeros(1), index=torch.zeros(1),
                student=student, teacher=teacher, epoch=epoch, max_epochs=1, global_step=0,
                student_views=student_views, teacher_views=teacher_views)


def test_without_views_both_heads_read_the_same_input(experiment):
    module, _ = build_variant(experiment, "local")
    dino = module.objectives[0]
    fs, ft = torch.randn(4, 16), torch.randn(4, 16)
    loss = dino(step_with(outputs(fs), outputs(ft)))
    expected = dino_loss(dino.head(fs), dino.teacher_head(ft), 1.0, 1.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_with_views_the_teacher_sees_global_views_and_pairs_skip_the_same_view(experiment):
    module, _ = build_variant(experiment, "views")
    dino = module.objectives[0]
    assert dino.uses_views and module.uses_views
    s = [torch.randn(4, 16) for _ in range(3)]
    t = [torch.randn(4, 16) for _ in range(3)]
    loss = dino(step_with(None, None, [outputs(v) for v in s], [outputs(v) for v in t]))
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]
    expected = sum(dino_loss(dino.head(s[j]), dino.teacher_head(t[i]), 1.0, 1.0)
                   for i, j in pairs) / len(pairs)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_centering_uses_the_center_then_moves_it_toward_the_teacher_batch_mean(experiment):
    module, _ = build_variant(experiment, "centred")
    dino = module.objectives[0]
    dino.center.copy_(torch.randn(64))
    before = dino.center.clone()
    fs, ft = torch.randn(4, 16), torch.randn(4, 16)
    loss = dino(step_with(outputs(fs), outputs(ft)))
    g_t = dino.teacher_head(ft)
    assert loss.item() == pytest.approx(
        dino_loss(dino.head(fs), g_t, 0.1, 0.04, before).item(), rel=1e-6)
    assert torch.allclose(dino.center, 0.9 * before + 0.1 * g_t.mean(dim=0), atol=1e-6)


def test_teacher_temperature_warms_up_linearly():
    from distill.objectives.dino import Dino

    dino = Dino(teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=30)
    assert dino.teacher_temp_at(0) == pytest.approx(0.04)
    assert dino.teacher_temp_at(15) == pytest.approx(0.055)
    assert dino.teacher_temp_at(30) == dino.teacher_temp_at(99) == pytest.approx(0.07)
