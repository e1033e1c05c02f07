"""nd (KD++): the loss against its formula in both norm branches, the adapter, the KD++ recipe
files, and the one-line errors for impossible set-ups."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from distill.cli import main
from distill.config import load_experiment
from distill.engine.build import build_data, build_module, build_teacher
from distill.objectives.nd import nd_loss
from dataset_files import write_cifar100
from experiment_text import digits_pair


def reference_nd(fs, ft, means, labels):
    """The authors' per-sample loop: 1 - <s, c/|c|> / max(|s|, |t|), averaged."""
    total = 0.0
    for s, t, y in zip(fs.tolist(), ft.tolist(), labels.tolist()):
        c = means[y].tolist()
        c_norm = math.sqrt(sum(v * v for v in c))
        dot = sum(a * b / c_norm for a, b in zip(s, c))
        largest = max(math.sqrt(sum(v * v for v in s)), math.sqrt(sum(v * v for v in t)))
        total += 1 - dot / largest
    return total / len(labels)


def random_case(student_scale, teacher_scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    fs = torch.nn.functional.normalize(torch.randn(6, 5, generator=g), dim=1) * student_scale
    ft = torch.nn.functional.normalize(torch.randn(6, 5, generator=g), dim=1) * teacher_scale
    means = torch.randn(4, 5, generator=g) * 3
    labels = torch.randint(0, 4, (6,), generator=g)
    return fs, ft, means, labels


@pytest.mark.parametrize("student_scale, teacher_scale", [(0.5, 2.0), (3.0, 1.0), (1.0, 1.0)])
def test_nd_loss_equals_its_formula(student_scale, teacher_scale):
    case = random_case(student_scale, teacher_scale)
    assert nd_loss(*case).item() == pytest.approx(reference_nd(*case), rel=1e-5)


def test_nd_loss_with_mixed_norms_in_one_batch():
    fs, ft, means, labels = random_case(1.0, 1.0, seed=3)
    fs = fs * torch.tensor([0.2, 4.0, 0.7, 2.5, 1.0, 0.1]).unsqueeze(1)
    assert nd_loss(fs, ft, means, labels).item() == pytest.approx(
        reference_nd(fs, ft, means, labels), rel=1e-5)


def test_below_the_teacher_norm_growing_the_student_lowers_the_loss():
    fs, ft, means, labels = random_case(0.5, 4.0)
    fs = torch.nn.functional.normalize(means[labels], dim=1) * 0.5  # aligned with e_y
    assert nd_loss(2 * fs, ft, means, labels) < nd_loss(fs, ft, means, labels)
    # at the teacher's norm, aligned: the loss is 0
    assert nd_loss(8 * fs, ft, means, labels).item() == pytest.approx(0.0, abs=1e-6)


def test_above_the_teacher_norm_it_is_a_cosine_loss():
    fs, ft, means, labels = random_case(5.0, 1.0)
    cosine = torch.nn.functional.cosine_similarity(fs, means[labels], dim=1)
    assert nd_loss(fs, ft, means, labels).item() == pytest.approx((1 - cosine).mean().item(),
                                                                  rel=1e-5)
    assert nd_loss(3 * fs, ft, means, labels).item() == pytest.approx(
        nd_loss(fs, ft, means, labels).item(), rel=1e-5)


def test_nd_gradient_reaches_the_student_only():
    fs, ft, means, labels = random_case(0.5, 2.0)
    for t in (fs, ft, means):
        t.requires_grad_(True)
    nd_loss(fs, ft * 1.0, means * 1.0, labels).backward()
    assert fs.grad.abs().sum() > 0
    assert ft.grad is None and means.grad is None  # teacher norm and class-means are targets


# --- the objective inside an experiment ----------------------------------------------------------

EXPERIMENT = digits_pair("nd-test", "  - {name: ce}\n  - {name: kd}\n  - {name: nd, weight: 2}\n")


def build(tmp_path, text):
    f = tmp_path / "exp.yaml"
    f.write_text(text)
    exp = load_experiment(str(f)).base
    data = build_data(exp, 0)
    return build_module(exp, data, build_teacher(exp, data, None))


def test_an_adapter_maps_student_features_to_the_teacher_size_and_is_optimised(tmp_path):
    module = build(tmp_path, EXPERIMENT)
    nd = module.terms[2].objective
    bn, dropout, linear = nd.adapter
    assert isinstance(bn, nn.BatchNorm1d) and bn.num_features == 32
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.5
    assert (linear.in_features, linear.out_features) == (32, 16)
    assert torch.equal(linear.bias, torch.zeros(16))
    optimizer = module.configure_optimizers()  # schedule none: the optimiser alone
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all(id(p) in optimised for p in nd.adapter.parameters())
    assert nd.class_means.means.shape == (10, 16)


def test_equal_sizes_need_no_adapter(tmp_path):
    module = build(tmp_path, EXPERIMENT.replace("{name: mlp, hidden: [32]}",
                                                "{name: mlp, hidden: [16]}"))
    assert isinstance(module.terms[2].objective.adapter, nn.Identity)


def validate_fails(tmp_path, capsys, text, line, key, words):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{f}:{line}: {key}: "), err[0]
    for w in words:
        assert w in err[0], err[0]


def test_mismatched_sizes_without_adapter_is_one_line(tmp_path, capsys):
    text = EXPERIMENT.replace("{name: nd, weight: 2}", "{name: nd, weight: 2, adapter: false}")
    validate_fails(tmp_path, capsys, text, 14, "objectives.2.adapter",
                   ["32 dimensions", "teacher's 16", "adapter: true"])


def test_nd_without_labels_is_one_line(tmp_path, capsys):
    text = EXPERIMENT.replace("data: {name: digits, batch_size: 64}",
                              "data: {name: digits, batch_size: 64, labels: false}")
    text = text.replace("role: frozen", "role: random").replace("  train: {epochs: 1}\n", "", 1)
    text = text.replace("  - {name: ce}\n  - {name: kd}\n", "")
    validate_fails(tmp_path, capsys, text, 11, "objectives.0",
                   ["nd uses the labels", "data.labels: false"])


def test_a_teacher_stage_without_labels_is_one_line(tmp_path, capsys):
    text = EXPERIMENT.replace("data: {name: digits, batch_size: 64}",
                              "data: {name: digits, batch_size: 64, labels: false}")
    validate_fails(tmp_path, capsys, text, 7, "teacher.train", ["trains on the labels"])


def test_nd_without_a_teacher_is_one_line(tmp_path, capsys):
    text = EXPERIMENT.replace("teacher:\n  role: frozen\n  net: {name: small_cnn, width: 8}\n"
                              "  train: {epochs: 1}\n", "").replace("  - {name: kd}\n", "")
    validate_fails(tmp_path, capsys, text, 9, "objectives.1", ["nd needs a teacher"])


# --- the KD++ recipe files for CIFAR-100 --------------------------------------------------------

@pytest.mark.parametrize("file, teacher, student, kd_weight", [
    ("experiments/cifar100_resnet32x4_resnet8x4_kdpp.yaml", "resnet32x4", "resnet8x4", 3.5),
    ("experiments/cifar100_resnet56_resnet20_kdpp.yaml", "resnet56", "resnet20", 1.0),
])
def test_kdpp_files_hold_the_published_recipe_and_validate(tmp_path, capsys, file, teacher,
                                                           student, kd_weight):
    write_cifar100(tmp_path)
    assert main(["validate", file, "--set", f"data.root={tmp_path}"]) == 0
    assert "ok" in capsys.readouterr().out
    ef = load_experiment(file, [f"data.root={tmp_path}"])
    kdpp = ef.variants["kd++"]
    assert (kdpp.teacher.net.name, kdpp.student.net.name) == (teacher, student)
    recipe = [(o.name, o.weight, o.warmup_epochs) for o in kdpp.objectives]
    assert recipe == [("ce", 1.0, 0), ("kd", kd_weight, 20), ("nd", 2.0, 0)]
    assert kdpp.objectives[1].params() == {"temperature": 4}
    assert (kdpp.train.epochs, kdpp.data.batch_size) == (240, 64)
    assert kdpp.train.optimizer.params() == {"lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4}
    assert kdpp.train.schedule.params() == {"milestones": [150, 180, 210], "gamma": 0.1}
    # the kd baseline differs from kd++ by the nd term only
    assert [o.name for o in ef.variants["kd"].objectives] == ["ce", "kd"]
    assert ef.variants["kd"].objectives[1] == kdpp.objectives[1]


def test_kdpp_files_refuse_a_missing_dataset(tmp_path, capsys):
    file = "experiments/cifar100_resnet56_resnet20_kdpp.yaml"
    assert main(["validate", file, "--set", f"data.root={tmp_path / 'none'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.root" in err[0] and "cifar-100-python" in err[0]
