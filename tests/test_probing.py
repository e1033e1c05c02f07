"""Probing: k-NN and the linear probe measure what they claim, deterministically, and never change
the encoder they read."""
from __future__ import annotations

import pytest
import torch

from distill.config import load_experiment
from distill.engine.build import build_data, build_module, build_teacher
from distill.evaluation.knn import knn_accuracy
from distill.evaluation.linear_probe import linear_probe_accuracy, standardise
from distill.registry import evaluators

TINY = """\
name: probe
seeds: [0]
data: {name: digits, batch_size: 64, labels: false}
teacher: {role: random}
student:
  net: {name: small_cnn, width: 8}
train: {epochs: 1, optimizer: {name: adamw, lr: 1.0e-3}}
objectives:
  - {name: dino, out_dim: 32, hidden: 16, bottleneck: 8}
evaluate: [{name: linear_probe, steps: 20}, {name: knn, k: 5}]
"""


def clusters(n_per_class: int, classes: int, dim: int, seed: int, spread: float = 0.3):
    """Well-separated Gaussian clusters around random unit directions."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(classes, dim, generator=torch.Generator()
                                                         .manual_seed(99)), dim=1) * 5
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[y] + spread * torch.randn(len(y), dim, generator=g), y


def test_knn_is_perfect_on_separable_clusters_and_at_chance_with_shuffled_labels():
    train_x, train_y = clusters(50, 4, 8, seed=0)
    test_x, test_y = clusters(50, 4, 8, seed=1)
    assert knn_accuracy(train_x, train_y, test_x, test_y, 4, k=20) == 100.0
    shuffled = train_y[torch.randperm(len(train_y), generator=torch.Generator().manual_seed(2))]
    assert 10 < knn_accuracy(train_x, shuffled, test_x, test_y, 4, k=20) < 40


def test_knn_takes_the_majority_of_the_k_most_cosine_similar():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]])
    train_y = torch.tensor([0, 1, 1, 2, 2])
    test_x = torch.tensor([[10.0, 0.5]])  # scale does not matter, only the angle
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([1]), 3, k=3) == 100.0
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([0]), 3, k=1) == 100.0


def test_the_linear_probe_separates_separable_clusters_and_is_deterministic():
    train_x, train_y = clusters(40, 5, 6, seed=0)
    test_x, test_y = clusters(40, 5, 6, seed=1)
    first = linear_probe_accuracy(train_x, train_y, test_x, test_y, 5)
    assert first == 100.0
    shuffled = train_y[torch.randperm(len(train_y), generator=torch.Generator().manual_seed(3))]
    chance = linear_probe_accuracy(train_x, shuffled, test_x, test_y, 5)
    assert chance < 45
    assert linear_probe_accuracy(train_x, shuffled, test_x, test_y, 5) == chance


def test_the_linear_probe_sees_standardised_features():
    x = torch.tensor([[1.0, 100.0, 3.0], [3.0, 300.0, 3.0], [5.0, 500.0, 3.0]])
    train, test = standardise(x, x[:1])
    assert torch.allclose(train.mean(dim=0), torch.zeros(3), atol=1e-6)
    assert torch.allclose(train.std(dim=0)[:2], torch.ones(2))
    assert torch.equal(train[:, 2], torch.zeros(3))  # a constant dimension becomes 0
    assert torch.allclose(test, train[:1])


def test_probing_changes_neither_the_encoders_nor_their_batchnorm_statistics(tmp_path):
    f = tmp_path / "probe.yaml"
    f.write_text(TINY)
    exp = load_experiment(str(f)).base
    data = build_data(exp, 0)
    module = build_module(exp, data, build_teacher(exp, data, None))
    module.train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    metrics = {}
    for spec in exp.evaluate:
        metrics.update(evaluators.get(spec.name).target(**spec.params())(module, data))
    assert set(metrics) == {f"{kind}_{source}" for kind in ("probe", "knn")
                            for source in ("student", "teacher", "raw")}
    assert all(0 <= v <= 100 for v in metrics.values())
    after = module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert module.student.training and not module.teacher.network.training


def test_probes_of_a_run_without_teacher_skip_the_teacher(tmp_path):
    f = tmp_path / "probe.yaml"
    f.write_text(TINY.replace("teacher: {role: random}\n", "").replace(
        "  - {name: dino, out_dim: 32, hidden: 16, bottleneck: 8}", "  - {name: ce}").replace(
        ", labels: false", ""))
    exp = load_experiment(str(f)).base
    data = build_data(exp, 0)
    module = build_module(exp, data, None)
    metrics = evaluators.get("knn").target(k=3)(module, data)
    assert set(metrics) == {"knn_student", "knn_raw"}
    assert metrics["knn_raw"] == pytest.approx(
        knn_accuracy(*raw(data), data.num_classes, k=3))


def raw(data):
    train = [(x.flatten(), y) for x, y, _ in data.train_set]
    test = [(x.flatten(), y) for x, y, _ in data.test_set]
    return (torch.stack([x for x, _ in train]), torch.tensor([int(y) for _, y in train]),
            torch.stack([x for x, _ in test]), torch.tensor([int(y) for _, y in test]))
