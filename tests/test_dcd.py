"""DCD: the loss equals METHODS.md's formula on random tensors, in both weighting modes."""
from __future__ import annotations

import math

import pytest
import torch

from distill.objectives.dcd import dcd_loss


def reference(student, teacher, alpha, T, weighting):
    """METHODS.md, dcd, step by step in plain Python."""
    S, Tt = student.tolist(), teacher.tolist()
    H = []
    for row in Tt:
        e = [math.exp(v) for v in row]
        p = [v / sum(e) for v in e]
        H.append(-sum(q * math.log(q) for q in p))
    h = [v / sum(H) for v in H]
    r_raw = [math.exp((1 - v) ** 2) for v in h]
    r = [v / sum(r_raw) for v in r_raw]
    mse = [sum((a / T - b / T) ** 2 for a, b in zip(s, t)) / len(s) for s, t in zip(S, Tt)]
    if weighting == "dynamic":
        L_d = T * T * sum(w * m for w, m in zip(r, mse))
    else:
        L_d = T * T * sum(mse) / len(mse)

    def bce(x, y):
        return max(x, 0) - x * y + math.log(1 + math.exp(-abs(x)))

    L_h = sum(hq * sum(bce(x, 1.0 if k == 0 else 0.0) for k, x in enumerate(s)) / len(s)
              for hq, s in zip(h, S))
    return alpha * L_d, (1 - alpha) * L_h


@pytest.mark.parametrize("weighting", ["dynamic", "none"])
@pytest.mark.parametrize("alpha,T", [(0.2, 1.0), (0.7, 2.5)])
def test_dcd_loss_equals_its_formula(weighting, alpha, T):
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(5, 8, generator=g) * 2, torch.randn(5, 8, generator=g) * 3
    terms = dcd_loss(student, teacher, alpha=alpha, temperature=T, weighting=weighting)
    distill, hard = reference(student, teacher, alpha, T, weighting)
    assert terms["distill"].item() == pytest.approx(distill, rel=1e-5)
    assert terms["hard"].item() == pytest.approx(hard, rel=1e-5)


def test_the_dynamic_weights_matter_and_favour_confident_queries():
    # a query the teacher is sure of (peaked scores) and one it is not (flat scores), with the same
    # student error on each: the dynamic weighting counts the confident query's error more
    teacher = torch.tensor([[8.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.1, 0.0]])
    error = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    on_confident = dcd_loss(teacher + torch.cat([error, 0 * error]), teacher)["distill"]
    on_unsure = dcd_loss(teacher + torch.cat([0 * error, error]), teacher)["distill"]
    assert on_confident > on_unsure
    flat = dcd_loss(teacher + torch.cat([error, 0 * error]), teacher, weighting="none")["distill"]
    assert flat == pytest.approx(dcd_loss(teacher + torch.cat([0 * error, error]), teacher,
                                          weighting="none")["distill"].item())


def test_no_gradient_reaches_the_teacher_scores():
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True)
    sum(dcd_loss(student, teacher * 1.0).values()).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None
