"""rkd equals its definition (mdistiller's rkd_loss, written out with loops here) on random
embeddings, edge cases included."""
from __future__ import annotations

import math

import pytest
import torch

from distill.objectives.rkd import rkd_loss


def smooth_l1(a: list[float], b: list[float]) -> float:
    return sum(0.5 * (x - y) ** 2 if abs(x - y) < 1 else abs(x - y) - 0.5
               for x, y in zip(a, b)) / len(a)


def relations(e: list[list[float]]):
    n = len(e)
    dist = [[0.0 if i == j else max(sum((a - b) ** 2 for a, b in zip(e[i], e[j])), 1e-12) ** 0.5
             for j in range(n)] for i in range(n)]
    positive = [d for row in dist for d in row if d > 0]
    mu = sum(positive) / len(positive) if positive else 1.0
    distances = [d / mu for row in dist for d in row]
    angles = []
    for j in range(n):
        for i in range(n):
            for k in range(n):
                u = [a - b for a, b in zip(e[i], e[j])]
                v = [a - b for a, b in zip(e[k], e[j])]
                nu = max(math.sqrt(sum(x * x for x in u)), 1e-12)
                nv = max(math.sqrt(sum(x * x for x in v)), 1e-12)
                angles.append(sum(a * b for a, b in zip(u, v)) / (nu * nv))
    return distances, angles


def reference(s, t, wd, wa):
    sd, sa = relations(s.tolist())
    td, ta = relations(t.tolist())
    return wd * smooth_l1(sd, td) + wa * smooth_l1(sa, ta)


@pytest.mark.parametrize("batch,ds,dt,wd,wa", [(5, 3, 3, 25.0, 50.0), (4, 2, 6, 1.0, 0.0),
                                               (6, 8, 4, 0.0, 2.0), (2, 3, 3, 25.0, 50.0)])
def test_rkd_loss_is_its_definition(batch, ds, dt, wd, wa):
    g = torch.Generator().manual_seed(batch + ds)
    s, t = torch.randn(batch, ds, generator=g), torch.randn(batch, dt, generator=g) * 4
    assert rkd_loss(s, t, wd, wa).item() == pytest.approx(reference(s, t, wd, wa), rel=1e-4,
                                                          abs=1e-6)


def test_feature_maps_are_flattened():
    s, t = torch.randn(4, 2, 3, 3), torch.randn(4, 5, 2, 2)
    assert rkd_loss(s, t).item() == pytest.approx(rkd_loss(s.flatten(1), t.flatten(1)).item())


def test_a_batch_of_one_has_no_relation_and_equal_embeddings_none_to_correct():
    assert rkd_loss(torch.randn(1, 4), torch.randn(1, 4)).item() == 0.0
    e = torch.randn(5, 4)
    assert rkd_loss(e, e * 3.0).item() == pytest.approx(0.0, abs=1e-5)  # relations are scale-free
    same = torch.ones(3, 4)  # all rows equal: every distance at the clamp, no NaN
    assert torch.isfinite(rkd_loss(same, torch.randn(3, 4)))


def test_only_the_student_gets_a_gradient():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    rkd_loss(s, t * 1.0).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None


def test_the_objective_reads_the_penultimate_features_with_the_files_weights():
    from types import SimpleNamespace

    from distill.objectives.rkd import RKD

    s, t = torch.randn(5, 3), torch.randn(5, 7)
    step = SimpleNamespace(student=SimpleNamespace(features=s), teacher=SimpleNamespace(features=t))
    assert RKD(distance_weight=2.0, angle_weight=0.5)(step).item() == pytest.approx(
        reference(s, t, 2.0, 0.5), rel=1e-4)
    assert RKD()(step).item() == pytest.approx(reference(s, t, 25.0, 50.0), rel=1e-4)
