"""crd against the authors' ContrastMemory and ContrastLoss (written out here), its sampling of
negatives from other classes, and its memory bank across a resume."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distill.objectives.crd import ContrastMemory, OtherClassSampler, nce_loss


def authors_step(mem_s, mem_t, v_s, v_t, idx, contrast, T, m, n, z=(-1.0, -1.0)):
    """RepDistiller's ContrastMemory.forward then ContrastLoss on both sides, returning the loss,
    the updated banks and the constants. mem_s is their memory_v1 (student), mem_t memory_v2."""
    K = contrast.shape[1] - 1
    out_t = torch.exp(torch.bmm(mem_s[contrast], v_t[:, :, None]) / T)  # out_v2
    out_s = torch.exp(torch.bmm(mem_t[contrast], v_s[:, :, None]) / T)  # out_v1
    z_s = z[0] if z[0] > 0 else out_s.mean().item() * n
    z_t = z[1] if z[1] > 0 else out_t.mean().item() * n
    out_s, out_t = (out_s / z_s).squeeze(2), (out_t / z_t).squeeze(2)

    def contrast_loss(x):
        pn = 1 / float(n)
        log_d1 = torch.log(x[:, 0] / (x[:, 0] + K * pn + 1e-7))
        log_d0 = torch.log((K * pn) / (x[:, 1:] + K * pn + 1e-7))
        return -(log_d1.sum(0) + log_d0.reshape(-1, 1).sum(0)) / x.shape[0]

    loss = contrast_loss(out_s) + contrast_loss(out_t)
    new_s, new_t = mem_s.clone(), mem_t.clone()
    pos = mem_s[idx] * m + v_s * (1 - m)
    new_s[idx] = pos / pos.pow(2).sum(1, keepdim=True).pow(0.5)
    pos = mem_t[idx] * m + v_t * (1 - m)
    new_t[idx] = pos / pos.pow(2).sum(1, keepdim=True).pow(0.5)
    return loss.item(), new_s, new_t, (z_s, z_t)


@pytest.mark.parametrize("batch,k,T,m", [(4, 6, 0.07, 0.5), (1, 3, 0.5, 0.9), (5, 12, 0.1, 0.0)])
def test_two_steps_equal_the_authors_memory_and_loss(batch, k, T, m):
    torch.manual_seed(batch)
    n, dim = 20, 8
    memory = ContrastMemory(dim, n, n, T, m)
    mem_s, mem_t = memory.student_bank.clone(), memory.teacher_bank.clone()
    z = (-1.0, -1.0)
    for step in range(2):
        v_s = F.normalize(torch.randn(batch, dim), dim=1)
        v_t = F.normalize(torch.randn(batch, dim), dim=1)
        idx = torch.randperm(n)[:batch]
        contrast = torch.cat([idx[:, None], torch.randint(0, n, (batch, k))], dim=1)
        expected, mem_s, mem_t, z = authors_step(mem_s, mem_t, v_s, v_t, idx, contrast, T, m, n, z)
        h_s, h_t = memory.scores(v_s, v_t, contrast)
        ours = (nce_loss(h_s, n) + nce_loss(h_t, n)).item()
        memory.update(v_s, v_t, idx)
        assert ours == pytest.approx(expected, rel=1e-5)
        torch.testing.assert_close(memory.student_bank, mem_s)
        torch.testing.assert_close(memory.teacher_bank, mem_t)
        assert memory.z.tolist() == pytest.approx(list(z), rel=1e-6)  # Z kept from step 0


def test_the_memory_bank_starts_uniform_within_the_authors_bound():
    memory = ContrastMemory(12, 500, 500, 0.07, 0.5)
    bound = 1 / math.sqrt(12 / 3)
    for bank in (memory.student_bank, memory.teacher_bank):
        assert bank.abs().max() <= bound and bank.min() < -0.9 * bound and bank.max() > 0.9 * bound
    assert {"student_bank", "teacher_bank", "z"} <= set(memory.state_dict())  # in checkpoints


@pytest.mark.parametrize("k", [3, 50])  # without replacement (enough others), with
def test_negatives_are_training_samples_of_the_other_classes(k):
    torch.manual_seed(0)
    members = torch.tensor([10, 11, 12, 13, 14, 15, 16, 17, 18, 19])  # a subset of a larger set
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    sampler = OtherClassSampler(members, labels, k)
    label_of = dict(zip(members.tolist(), labels.tolist()))
    rows = torch.tensor([0, 1, 2, 2])
    drawn = sampler(rows)
    assert drawn.shape == (4, k)
    for row, y in zip(drawn.tolist(), rows.tolist()):
        assert all(label_of[i] != y for i in row)
        if k == 3:
            assert len(set(row)) == k  # without replacement
    many = torch.cat([sampler(torch.tensor([2])) for _ in range(400)]).flatten()
    counts = torch.bincount(many, minlength=20)[10:]
    others = [i for i, y in enumerate(labels.tolist()) if y != 2]
    assert all(counts[i] > 0 for i in others)  # every other-class sample can be drawn
    share = counts[others].float() / counts.sum()
    assert share.max() - share.min() < 0.08  # uniformly


def test_nce_loss_falls_as_the_positive_score_rises():
    low = torch.tensor([[0.5, 1.0, 1.0, 1.0]])
    high = torch.tensor([[5.0, 1.0, 1.0, 1.0]])
    assert nce_loss(high, 100) < nce_loss(low, 100)


def test_the_files_values_reach_the_objective_and_a_step_trains_the_embeddings(tmp_path):
    from distill.config.load import load_experiment
    from experiment_text import build_variant, digits_pair

    f = tmp_path / "crd.yaml"
    f.write_text(digits_pair("crd", "  - {name: ce}\n  - {name: crd, negatives: 40, dim: 16, "
                                    "temperature: 0.2, momentum: 0.7}\n"))
    module, data = build_variant(load_experiment(str(f)), "default")
    term = module.terms[1]
    crd = term.objective
    assert term.weight == 0.8  # mdistiller's
    assert (crd.sampler.k, crd.memory.temperature, crd.memory.momentum) == (40, 0.2, 0.7)
    assert crd.embed_student.out_features == 16 and crd.memory.student_bank.shape[1] == 16
    assert crd.memory.student_bank.shape[0] == len(data.splits.train)
    x, y, index = next(iter(data.train_dataloader()))
    before = crd.memory.student_bank[index].clone()
    loss = crd(module.kind.step(module, (x, y, index)))
    assert torch.isfinite(loss) and loss > 0
    assert not torch.equal(crd.memory.student_bank[index], before)  # the bank moved
    loss.backward()
    assert crd.embed_student.weight.grad.abs().sum() > 0
    assert crd.embed_teacher.weight.grad.abs().sum() > 0  # trained with the student too


def test_each_row_draws_without_replacement_when_its_other_classes_have_enough():
    members = torch.arange(6)
    labels = torch.tensor([0, 0, 0, 0, 0, 1])  # class 1 has 5 others, class 0 has 1
    sampler = OtherClassSampler(members, labels, 3)
    drawn = sampler(torch.tensor([1, 0, 1]))
    assert len(set(drawn[0].tolist())) == 3 and len(set(drawn[2].tolist())) == 3
    assert drawn[1].tolist() == [5, 5, 5]  # the one other sample, with replacement
    assert set(drawn[0].tolist()) <= {0, 1, 2, 3, 4}


def test_crd_without_labels_is_refused(tmp_path, capsys):
    from distill.cli import main
    from experiment_text import digits_pair

    f = tmp_path / "crd.yaml"
    f.write_text(digits_pair("crd", "  - {name: crd}\n").replace(
        "data: {name: digits, batch_size: 64}", "data: {name: digits, batch_size: 64, "
                                                "labels: false}").replace(
        "  role: frozen\n", "  role: random\n").replace("  train: {epochs: 1}\n", "", 1))
    assert main(["validate", str(f)]) == 2
    assert "crd uses the labels" in capsys.readouterr().err
