"""QCRD's pieces against their definitions on hand-built cases: the contrastive rationale loss,
the self-consistency filter, the rationale pool, the piece tokenizer and answer parsing."""
from __future__ import annotations

import math

import pytest
import torch

from distill.task_kinds.generation import answer_after
from distill.data.sequence_tokenizer import EOS, PieceTokenizer, pieces
from distill.objectives.qcrd import contrastive_rationale_loss
from distill.objectives.rationale_pool import RationalePool, self_consistency
from distill.objectives.snapshot_ring import SnapshotRing

INF = float("inf")


def test_loss_takes_the_weighted_easiest_positive_and_hinges_negatives():
    pos = torch.tensor([[2.0, 0.5, INF], [INF, INF, INF], [1.0, 3.0, 0.2]])
    pos_w = torch.tensor([[0.9, 0.4, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.25]])
    neg = torch.tensor([[1.0, 4.0], [2.5, INF], [INF, INF]])
    neg_w = torch.tensor([[0.5, 1.0], [0.2, 7.0], [1.0, 1.0]])
    positive, negative = contrastive_rationale_loss(pos, neg, pos_w, neg_w, delta=3.0)
    # problem 0: easiest positive 0.5 with weight 0.4; problem 1 has none; problem 2: 0.2 x 0.25
    assert positive.item() == pytest.approx((0.4 * 0.5 + 0.25 * 0.2) / 2)
    # hinge max(0, 3 - nll) weighted: problem 0: 0.5 * 2 + 1.0 * 0; problem 1: 0.2 * 0.5; 2: 0
    assert negative.item() == pytest.approx((1.0 + 0.1 + 0.0) / 3)


def test_loss_gradients_reach_only_the_chosen_positive_and_active_negatives():
    pos = torch.tensor([[2.0, 0.5]], requires_grad=True)
    neg = torch.tensor([[1.0, 4.0]], requires_grad=True)
    positive, negative = contrastive_rationale_loss(pos, neg, torch.ones(1, 2), torch.ones(1, 2),
                                                    delta=3.0)
    (positive + negative).backward()
    assert pos.grad.tolist() == [[0.0, 1.0]]
    assert neg.grad.tolist() == [[-1.0, 0.0]]  # the negative above the margin is left alone


def test_margin_changes_the_negative_term():
    neg = torch.tensor([[1.0, 2.5]])
    ones = torch.ones(1, 2)
    pos = torch.tensor([[1.0, INF]])
    _, low = contrastive_rationale_loss(pos, neg, ones, ones, delta=2.0)
    _, high = contrastive_rationale_loss(pos, neg, ones, ones, delta=3.0)
    assert (low.item(), high.item()) == (pytest.approx(1.0), pytest.approx(2.0 + 0.5))


def test_self_consistency_keeps_gold_majority_only():
    answers = [["6", "6", "7", None, "6"],     # majority 6 = gold: keep the three 6s
               ["6", "7", "7", "7", "6"],      # majority 7 != gold 6: keep none
               ["6", "7", None, None, None],   # tie 6/7 includes gold: keep the 6
               [None, None, None, None, None],  # no answers
               [" Six ", "six", "five", "five", "seven"]]  # case and spaces ignored
    gold = ["6", "6", "6", "6", "six"]
    kept = self_consistency(answers, gold)
    assert kept.tolist() == [[True, True, False, False, True], [False] * 5,
                             [True, False, False, False, False], [False] * 5,
                             [True, True, False, False, False]]


def test_pool_splits_distinct_positives_from_the_teachers_negatives():
    tokens = torch.tensor([[[5, 1, 0], [5, 1, 0], [6, 1, 0], [0, 0, 0]],
                           [[7, 1, 0], [8, 1, 0], [9, 9, 1], [0, 0, 0]]])
    answers = [["6", "6", "3", None], ["1", "2", "3", None]]
    pool = RationalePool.from_samples(tokens, answers, gold=["6", "9"])
    assert pool.positives[0].tolist() == [[5, 1, 0], [0, 0, 0]]  # duplicate kept once
    assert pool.negatives[0].tolist() == [[6, 1, 0], [0, 0, 0], [0, 0, 0]]
    assert pool.positives[1].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert pool.negatives[1].tolist() == [[7, 1, 0], [8, 1, 0], [9, 9, 1]]
    assert (pool.sampled, pool.kept, pool.without_positive) == (6, 2, 1)


def test_piece_tokenizer_spells_numbers_and_restores_spacing():
    assert pieces("Tom has 12 apples.") == ["▁tom", "▁has", "▁1", "2", "▁apples", "."]
    tok = PieceTokenizer(["tom has 12 apples. 3 + 4 = 7"])
    ids = tok(["tom has 734 apples, 3 + 4 = 7", "tom"], length=16)
    assert ids[1].tolist()[:2] == [tok.ids["▁tom"], EOS]
    assert tok.decode(ids) == ["tom has 734 apples<unk> 3 + 4 = 7", "tom"]
    assert tok(["tom has 12 apples"], length=3).tolist() == [[tok.ids["▁tom"], tok.ids["▁has"],
                                                              EOS]]


def test_answer_after_the_last_marker():
    assert answer_after("3 + 4 = 7. the answer is 7.", "the answer is") == "7"
    assert answer_after("the answer is 3, no: the answer is 12", "the answer is") == "12"
    assert answer_after("3 + 4 = 7", "the answer is") is None
    assert answer_after("so The Answer Is", "the answer is") is None


def test_snapshot_ring_keeps_the_last_k_copies():
    ring = SnapshotRing(2)
    net = torch.nn.Linear(1, 1, bias=False)
    for value in (1.0, 2.0, 3.0):
        net.weight.data.fill_(value)
        ring.push(net)
    assert ring.full and math.isclose(ring.oldest()["weight"].item(), 2.0)
    net.weight.data.fill_(9.0)
    assert ring.oldest()["weight"].item() == 2.0  # copies, not references


def test_equation_value_parses_arithmetic_and_nothing_else():
    from distill.task_kinds.generation import equation_value

    assert equation_value("((10 - 6) + 10) / 2") == 7.0
    assert equation_value(" -3 * (2 + 1) ") == -9.0
    for text in ("__import__('os')", "2 ** 3", "1 / 0", "((((", "x + 1", "1" * 501, ""):
        assert equation_value(text) is None, text


def test_arithmetic_labels_are_the_steps_as_one_expression():
    from distill.data.arithmetic import expression, split_problems
    from distill.task_kinds.generation import equation_value

    assert expression("13 - 6 = 7. 7 * 2 = 14. 14 - 12 = 2. the answer is 2") == \
        "((13 - 6) * 2) - 12"
    train, _ = split_problems(200, 10, 0, max_value=20)
    assert all(equation_value(expression(p.rationale)) == p.answer for p in train)


def test_gold_answers_compare_like_parsed_ones():
    parsed = answer_after("so the answer is (b).", "the answer is")
    assert parsed == "(b"  # trailing punctuation stripped from what a rationale says
    assert self_consistency([[parsed, parsed, "a"]], ["(b)"]).tolist() == [[True, True, False]]
