"""Each value a QCRD or step-by-step user sets changes what the objective computes: the term
weights and margin, the ablations, the snapshot ring's depth, the student's sampling temperature,
the discriminator's pre-training, schedule, learning rate and size, and the teacher's samples."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from distill.config.load import load_experiment
from experiment_text import build_variant, own_data
from teachers.rationale_source import sample_rationales

LINES = [{"input": f"{a} plus {b}?", "label": str(a + b),
          "rationales": [{"text": f"{a} + {b} = {a + b}. the answer is {a + b}"},
                         {"text": f"{a} + {b} = {a + b + 1}. the answer is {a + b + 1}"},
                         {"text": f"{a} + {b} = {a + b}. so the answer is {a + b}"}][:2 + a % 2]}
         for a in range(1, 5) for b in range(1, 4)]  # problems with one positive and with two


def built(tmp_path, objective: str):
    """The module (pool gathered), its data, and a trainer stand-in for the hooks."""
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(line) for line in LINES) + "\n")
    f = tmp_path / "q.yaml"
    f.write_text(own_data("q", train, train, objective, epochs=6, batch_size=6))
    module, data = build_variant(load_experiment(str(f)), "default")
    trainer = SimpleNamespace(datamodule=data, is_global_zero=True, current_epoch=0)
    term = module.terms[0].objective
    term.on_fit_start(trainer, module)
    return module, data, trainer, term


def terms(module, data, term) -> dict[str, float]:
    batch = next(iter(data.train_dataloader()))
    return {k: v.item() for k, v in term(module.kind.step(module, batch)).items()}


def start_epoch(trainer, module, term, epoch: int) -> None:
    trainer.current_epoch = epoch
    term.on_train_epoch_start(trainer, module)


def test_term_weights_scale_their_terms_and_the_margin_moves_the_hinge(tmp_path):
    # a fresh student's NLLs are near log(vocabulary) > 3: a wide margin makes the hinge active
    base = "name: qcrd, discriminator: false, rounds_back: 1"
    a = terms(*[built(tmp_path, f"{{{base}, margin: 20.0}}")[i] for i in (0, 1, 3)])
    b = terms(*[built(tmp_path, f"{{{base}, margin: 20.0, positive_weight: 0.25, "
                                f"negative_weight: 1.0}}")[i] for i in (0, 1, 3)])
    assert b["positive"] == pytest.approx(a["positive"] / 2, rel=1e-5)
    assert b["negative"] == pytest.approx(a["negative"] * 2, rel=1e-5)
    assert b["label"] == pytest.approx(a["label"], rel=1e-6)
    c = terms(*[built(tmp_path, f"{{{base}, margin: 40.0}}")[i] for i in (0, 1, 3)])
    assert c["negative"] > a["negative"] > 0


def test_without_negatives_there_is_no_negative_term_and_no_student_sampling(tmp_path):
    module, data, trainer, term = built(tmp_path, "{name: qcrd, negatives: false, rounds_back: 1}")
    start_epoch(trainer, module, term, 1)
    assert "negative" not in terms(module, data, term) and term.student_negatives is None
    assert term.summary()["negatives_teacher"] == 0


def test_the_discriminator_weights_positives_by_its_quality(tmp_path):
    module, data, trainer, term = built(tmp_path, "{name: qcrd, rounds_back: 1}")
    batch = next(iter(data.train_dataloader()))
    step = module.kind.step(module, batch)
    rows = term.pool.positives[step.index]
    quality = term.weights(step.extra["explain"], rows)
    present = (rows != 0).any(-1)
    assert ((quality[present] > 0) & (quality[present] < 1)).all()
    assert (quality[~present] == 1).all()
    against = term.weights(step.extra["explain"], rows, negative=True)
    assert torch.allclose(against[present], 1 - quality[present])
    _, _, _, plain = built(tmp_path, "{name: qcrd, discriminator: false, rounds_back: 1}")
    for negative in (False, True):  # the ablation weighs every candidate 1
        assert (plain.weights(step.extra["explain"], rows, negative) == 1).all()
    assert plain.discriminator is None and term.discriminator is not None


def test_student_negatives_come_from_k_rounds_back_at_the_students_temperature(tmp_path):
    module, data, trainer, term = built(tmp_path, "{name: qcrd, rounds_back: 2}")
    start_epoch(trainer, module, term, 1)
    assert term.student_negatives is None and len(term.ring.states) == 1
    start_epoch(trainer, module, term, 2)
    assert term.student_negatives.shape[0] == len(LINES) and term.drawn == len(LINES)
    hot = term.student_negatives.clone()
    _, _, trainer2, cold = built(tmp_path, "{name: qcrd, rounds_back: 2, "
                                           "student_temperature: 0.0001}")
    for epoch in (1, 2):
        start_epoch(trainer2, module, cold, epoch)
    greedy = module.student.net.generate(data.splits.train.explain,
                                         max_length=hot.shape[1])
    assert torch.equal(cold.student_negatives, greedy)  # the same weights, sampled cold
    assert not torch.equal(hot, greedy)


def test_pretraining_retraining_and_the_learning_rate_schedule(tmp_path):
    def weights(term):
        return torch.cat([p.detach().flatten() for p in term.discriminator.parameters()])

    _, _, _, none = built(tmp_path, "{name: qcrd, pretrain_epochs: 0}")
    torch.manual_seed(0)
    module, data, trainer, once = built(tmp_path, "{name: qcrd, pretrain_epochs: 1}")
    assert not torch.equal(weights(none), weights(once))
    steps = once.disc_optimizer.state[next(once.discriminator.parameters())]["step"].item()
    _, _, _, small_batch = built(tmp_path, "{name: qcrd, pretrain_epochs: 1, "
                                           "discriminator_batch: 4}")
    more = small_batch.disc_optimizer.state[next(small_batch.discriminator.parameters())]
    assert more["step"].item() > steps
    # re-trained at every retrain_every-th round, learning rate lr * decay^round
    _, _, trainer3, term = built(tmp_path, "{name: qcrd, retrain_every: 2, "
                                           "discriminator_lr: 0.01, discriminator_decay: 0.5}")
    before = weights(term)
    start_epoch(trainer3, module, term, 1)
    assert torch.equal(before, weights(term)) and term.rounds == 1
    start_epoch(trainer3, module, term, 2)
    assert not torch.equal(before, weights(term)) and term.rounds == 2
    assert term.disc_optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5)
    _, _, _, wide = built(tmp_path, "{name: qcrd, discriminator_dim: 128}")
    count = lambda t: sum(p.numel() for p in t.discriminator.parameters())  # noqa: E731
    assert count(wide) > count(term)


def test_the_teachers_sample_count_and_temperature(tmp_path):
    module, data, _, _ = built(tmp_path, "{name: dss}")
    net, sources = module.student.net, data.splits.train.explain
    three = sample_rationales(net, sources, 3, 1.0, 12, seed=0)
    assert three.shape == (len(LINES), 3, 12)
    cold = sample_rationales(net, sources, 2, 1e-4, 12, seed=0)
    assert torch.equal(cold[:, 0], cold[:, 1])
    assert torch.equal(cold[:, 0], net.generate(sources, max_length=12))
    assert not torch.equal(three[:, 0], three[:, 1])
    assert torch.equal(three, sample_rationales(net, sources, 3, 1.0, 12, seed=0))
    assert not torch.equal(three, sample_rationales(net, sources, 3, 1.0, 12, seed=1))


def test_teacher_negatives_caps_the_candidates_per_problem():
    from distill.objectives.qcrd import ContrastiveRationaleDistillation as Q

    rows = torch.tensor([[[1, 1], [2, 1], [3, 1]], [[4, 1], [0, 0], [0, 0]]])
    assert torch.equal(Q.at_most(rows, None), rows)
    torch.manual_seed(0)
    two = Q.at_most(rows, 2)
    assert two.shape == (2, 2, 2)
    assert (two[0] != 0).any(-1).all() and {tuple(r) for r in two[0].tolist()} <= \
        {(1, 1), (2, 1), (3, 1)} and len({tuple(r) for r in two[0].tolist()}) == 2
    assert two[1].tolist() == [[4, 1], [0, 0]]  # the present one first, absence kept


def test_rounds_back_beyond_the_training_is_refused(tmp_path, capsys):
    from distill.cli import main

    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(line) for line in LINES) + "\n")
    f = tmp_path / "q.yaml"
    f.write_text(own_data("q", train, train, "{name: qcrd, rounds_back: 6}", epochs=6,
                          batch_size=6))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "objectives.0.rounds_back" in err and "below train.epochs" in err
    f.write_text(own_data("q", train, train, "{name: qcrd, rounds_back: 6, negatives: false}",
                          epochs=6, batch_size=6))
    assert main(["validate", str(f)]) == 0  # no student negatives asked for


@pytest.mark.parametrize("margin", ["wide", "median"])
def test_scoring_only_the_rows_the_loss_reads_gives_the_loss_and_gradient_of_scoring_all(
        tmp_path, margin):
    """The objective scores every candidate without a graph, then with gradients only each
    problem's lowest-NLL positive and the negatives inside the margin: the same terms and the
    same gradient as scoring every candidate with gradients (the definition)."""
    from distill.objectives.qcrd import contrastive_rationale_loss
    from distill.objectives.rationale_pool import rows_nll

    module, data, trainer, term = built(tmp_path, "{name: qcrd, rounds_back: 1, margin: 20.0}")
    start_epoch(trainer, module, term, 1)
    start_epoch(trainer, module, term, 2)  # the student's negatives drawn
    batch = next(iter(data.train_dataloader()))
    params = [p for p in module.student.parameters() if p.requires_grad]
    module.student.eval()  # no dropout: the same numbers in every pass

    def reference_terms():
        """Every candidate scored with gradients, as the definition reads."""
        step = module.kind.step(module, batch)
        scorer, explain, index = step.extra["student_seq"], step.extra["explain"], step.index
        positives = term.pool.positives[index]
        negatives = torch.cat([term.at_most(term.pool.negatives[index], term.teacher_negatives),
                               term.student_negatives[index][:, None]], dim=1)
        pos_nll = rows_nll(scorer, explain, positives)
        neg_nll = rows_nll(scorer, explain, negatives)
        positive, negative = contrastive_rationale_loss(
            pos_nll, neg_nll, term.weights(explain, positives),
            term.weights(explain, negatives, negative=True), term.delta)
        return {"label": scorer.nll(step.inputs, step.labels).mean(),
                "positive": term.a1 * positive, "negative": term.a2 * negative}, neg_nll

    if margin == "median":  # some negatives inside the margin, some outside
        _, neg_nll = reference_terms()
        term.delta = neg_nll[torch.isfinite(neg_nll)].median().item()
    reference, neg_nll = reference_terms()
    counts = (term.pool.positives[batch[2]] != 0).any(dim=-1).sum(dim=1)
    assert (counts == 1).any() and (counts > 1).any()  # one positive is taken without scoring
    inside = (neg_nll < term.delta).sum().item()
    assert 0 < inside and (inside < torch.isfinite(neg_nll).sum().item()) == (margin == "median")
    ours = term(module.kind.step(module, batch))
    assert ours.keys() == reference.keys()

    def gradient(values):
        return torch.cat([g.flatten() for g in torch.autograd.grad(sum(values.values()), params)])

    for name in reference:
        assert ours[name].item() == pytest.approx(reference[name].item(), rel=1e-5, abs=1e-7)
    torch.testing.assert_close(gradient(ours), gradient(reference), rtol=1e-4, atol=1e-6)
