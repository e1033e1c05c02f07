"""dkd equals the authors' formula (mdistiller's dkd_loss, written out here) on random logits,
edge cases included, and its options and warm-up reach the run."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from distill.objectives.dkd import dkd_loss


def mdistiller_dkd(zs, zt, y, alpha, beta, T):
    """The authors' computation: probabilities summed into (target, rest), their log taken;
    the target class masked by subtracting 1000 for the non-target part; kl_div summed / B."""
    gt = torch.zeros_like(zs).scatter_(1, y[:, None], 1).bool()
    ps, pt = F.softmax(zs / T, dim=1), F.softmax(zt / T, dim=1)
    cat = lambda p: torch.stack([(p * gt).sum(1), (p * ~gt).sum(1)], dim=1)
    tckd = F.kl_div(torch.log(cat(ps)), cat(pt), reduction="sum") * T ** 2 / len(y)
    pt2 = F.softmax(zt / T - 1000.0 * gt, dim=1)
    log_ps2 = F.log_softmax(zs / T - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_ps2, pt2, reduction="sum") * T ** 2 / len(y)
    return alpha * tckd + beta * nckd


@pytest.mark.parametrize("batch,classes,alpha,beta,T", [(8, 10, 1.0, 8.0, 4.0), (1, 3, 0.5, 2.0, 1.0),
                                                        (5, 2, 2.0, 1.0, 2.5), (16, 100, 1.0, 8.0, 4.0)])
def test_dkd_loss_equals_the_authors_formula(batch, classes, alpha, beta, T):
    g = torch.Generator().manual_seed(batch * classes)
    zs, zt = torch.randn(batch, classes, generator=g) * 3, torch.randn(batch, classes, generator=g) * 3
    y = torch.randint(0, classes, (batch,), generator=g)
    ours = dkd_loss(zs, zt, y, alpha, beta, T)
    assert ours.item() == pytest.approx(mdistiller_dkd(zs, zt, y, alpha, beta, T).item(), rel=1e-5)


def test_a_class_absent_from_the_batch_and_equal_logits():
    zs = torch.randn(6, 5)
    y = torch.tensor([0, 0, 1, 1, 0, 1])  # classes 2-4 absent
    assert dkd_loss(zs, zs.clone(), y).item() == pytest.approx(0.0, abs=1e-6)
    zt = torch.randn(6, 5)
    assert dkd_loss(zs, zt, y).item() == pytest.approx(
        mdistiller_dkd(zs, zt, y, 1.0, 8.0, 4.0).item(), rel=1e-5)


def test_alpha_weighs_the_target_part_and_beta_the_rest():
    g = torch.Generator().manual_seed(1)
    zs, zt = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    y = torch.tensor([0, 1, 2, 3])
    tckd, nckd = dkd_loss(zs, zt, y, 1.0, 0.0).item(), dkd_loss(zs, zt, y, 0.0, 1.0).item()
    assert tckd > 0 and nckd > 0
    assert dkd_loss(zs, zt, y, 2.0, 3.0).item() == pytest.approx(2 * tckd + 3 * nckd, rel=1e-5)
    assert dkd_loss(zs, zt, y, 1.0, 1.0, 2.0) != dkd_loss(zs, zt, y, 1.0, 1.0, 4.0)


def test_confident_logits_stay_finite_where_the_log_of_probabilities_does_not():
    zs = torch.tensor([[200.0, -200.0, 0.0]])
    zt = torch.tensor([[-200.0, 200.0, 0.0]])
    loss = dkd_loss(zs, zt, torch.tensor([0]), temperature=1.0)
    assert torch.isfinite(loss) and loss > 100


def test_only_the_student_gets_a_gradient():
    zs = torch.randn(3, 4, requires_grad=True)
    zt = torch.randn(3, 4, requires_grad=True)
    dkd_loss(zs, zt * 1.0, torch.tensor([0, 1, 2])).backward()
    assert zs.grad.abs().sum() > 0 and zt.grad is None


def built_terms(tmp_path, objectives: str, epochs: int):
    from distill.config.load import load_experiment
    from experiment_text import build_variant, digits_pair

    f = tmp_path / "dkd.yaml"
    f.write_text(digits_pair("dkd", objectives).replace(
        "train: {epochs: 1}\nobjectives", f"train: {{epochs: {epochs}}}\nobjectives"))
    module, _ = build_variant(load_experiment(str(f)), "default")
    return {t.label: t for t in module.terms}


def test_dkd_warms_up_over_its_first_20_epochs_unless_the_file_says_otherwise(tmp_path):
    terms = built_terms(tmp_path, "  - {name: ce}\n  - {name: dkd, beta: 2.0}\n", epochs=40)
    assert terms["dkd"].warmup_epochs == 20 and terms["ce"].warmup_epochs == 0
    assert terms["dkd"].weight_at(0) == pytest.approx(1 / 20)  # mdistiller counts from epoch 1
    assert terms["dkd"].weight_at(9) == pytest.approx(0.5) and terms["dkd"].weight_at(19) == 1.0
    assert terms["dkd"].objective.beta == 2.0
    short = built_terms(tmp_path, "  - {name: dkd}\n", epochs=8)
    assert short["dkd"].warmup_epochs == 8  # the whole run when it is shorter
    assert short["dkd"].weight_at(7) == 1.0  # full weight by the last epoch
    given = built_terms(tmp_path, "  - {name: dkd, warmup_epochs: 3, alpha: 0.5, "
                                  "temperature: 2.0}\n", epochs=40)
    assert given["dkd"].warmup_epochs == 3
    g = torch.Generator().manual_seed(3)
    zs, zt = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    y = torch.tensor([1, 2, 3, 4])
    step = SimpleNamespace(student=SimpleNamespace(logits=zs), teacher=SimpleNamespace(logits=zt),
                           labels=y)
    assert given["dkd"].objective(step).item() == pytest.approx(
        mdistiller_dkd(zs, zt, y, 0.5, 8.0, 2.0).item(), rel=1e-5)
    assert short["dkd"].objective(step).item() == pytest.approx(
        mdistiller_dkd(zs, zt, y, 1.0, 8.0, 4.0).item(), rel=1e-5)
