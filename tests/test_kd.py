"""kd and ce equal their formulas on random tensors."""
from __future__ import annotations

import math

import pytest
import torch

from distill.objectives.kd import kd_loss


def reference_kd(zs, zt, T):
    total = 0.0
    for s_row, t_row in zip(zs.tolist(), zt.tolist()):
        ps = [math.exp(v / T) for v in s_row]
        pt = [math.exp(v / T) for v in t_row]
        ps = [p / sum(ps) for p in ps]
        pt = [p / sum(pt) for p in pt]
        total += sum(q * math.log(q / p) for p, q in zip(ps, pt))
    return T * T * total / len(zs)


@pytest.mark.parametrize("T", [1.0, 4.0, 7.5])
def test_kd_loss_is_the_scaled_kl_from_teacher_to_student(T):
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(6, 5, generator=g) * 3, torch.randn(6, 5, generator=g) * 3
    assert kd_loss(zs, zt, T).item() == pytest.approx(reference_kd(zs, zt, T), rel=1e-5)


def test_kd_loss_is_zero_for_equal_logits_and_positive_otherwise():
    z = torch.randn(4, 10)
    assert kd_loss(z, z.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(z, z.flip(1), 4.0).item() > 0


def test_kd_loss_gradient_reaches_only_the_student():
    # the teacher's logits are given with a graph of their own (a co-trained teacher's are):
    # the KD target is still a constant, so no gradient may flow into them
    zs = torch.randn(3, 4, requires_grad=True)
    zt = torch.randn(3, 4, requires_grad=True)
    kd_loss(zs, zt * 1.0, 2.0).backward()
    assert zs.grad is not None and zs.grad.abs().sum() > 0 and zt.grad is None
