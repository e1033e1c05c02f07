"""trg: each term against a hand-written loop of its formula, the token plumbing (resampling,
subsets, projection), CNN <-> ViT pairs, and the one-line error for a network without tokens."""
from __future__ import annotations

import math

import pytest
import torch

from distill.cli import main
from distill.contracts import BindContext, Step
from distill.objectives.trg import (TokenRelationGraph, context_loss, edge_loss,
                                    match_token_count, node_loss, node_temperature, pick_tokens)
from students import build_network
from experiment_text import digits_pair


def rows(x):
    return x.tolist()


def sq_dist(a, b):
    return sum((u - v) ** 2 for u, v in zip(a, b))


def softmax(values):
    top = max(values)
    e = [math.exp(v - top) for v in values]
    return [v / sum(e) for v in e]


def lower_median(values):
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def reference_edge(s, t, k, sigma=None):
    s, t = rows(s), rows(t)
    n = len(t)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    sig_t = sigma or lower_median([sq_dist(t[i], t[j]) for i, j in pairs])
    sig_s = sigma or lower_median([sq_dist(s[i], s[j]) for i, j in pairs])
    total = 0.0
    for i in range(n):
        others = sorted((j for j in range(n) if j != i), key=lambda j: sq_dist(t[i], t[j]))[:k]
        p = softmax([math.exp(-sq_dist(t[i], t[j]) / (2 * sig_t)) for j in others])
        q = softmax([math.exp(-sq_dist(s[i], s[j]) / (2 * sig_s)) for j in others])
        total += sum(a * math.log(a / b) for a, b in zip(p, q))
    return total / n


def cosine(a, b):
    return sum(u * v for u, v in zip(a, b)) / math.sqrt(sq_dist(a, [0] * len(a)) *
                                                         sq_dist(b, [0] * len(b)))


def reference_node(s, t, tau):
    s, t = rows(s), rows(t)
    total = 0.0
    for i in range(len(s)):
        scores = [cosine(s[i], t[j]) / tau for j in range(len(t))]
        total += -math.log(softmax(scores)[i])
    return total / len(s)


def reference_context(s, t):
    total, count = 0.0, 0
    for fs, ft in zip(s.tolist(), t.tolist()):
        def relations(f):
            d = len(f[0])
            return [softmax([sum(a * b for a, b in zip(f[i], f[j])) / math.sqrt(d)
                             for j in range(len(f))]) for i in range(len(f))]
        for row_s, row_t in zip(relations(fs), relations(ft)):
            for a, b in zip(row_s, row_t):
                total += (a - b) ** 2
                count += 1
    return total / count


@pytest.fixture
def g():
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_edge_loss_equals_its_formula(g, k):
    s, t = torch.randn(12, 5, generator=g), torch.randn(12, 7, generator=g) * 2
    assert edge_loss(s, t, k).item() == pytest.approx(reference_edge(s, t, k), rel=1e-4)


def test_edge_loss_with_a_fixed_sigma(g):
    s, t = torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    assert edge_loss(s, t, 4, sigma=3.0).item() == pytest.approx(
        reference_edge(s, t, 4, sigma=3.0), rel=1e-4)


def test_edge_loss_is_zero_for_the_same_geometry_and_takes_at_most_n_minus_1_neighbours(g):
    t = torch.randn(6, 3, generator=g)
    assert edge_loss(2 * t, t, 4).item() == pytest.approx(0.0, abs=1e-6)  # median sigma: scale-free
    s = torch.randn(6, 3, generator=g)
    assert edge_loss(s, t, 50).item() == pytest.approx(reference_edge(s, t, 5), rel=1e-4)


@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_node_loss_equals_its_formula(g, tau):
    s, t = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    assert node_loss(s, t, tau).item() == pytest.approx(reference_node(s, t, tau), rel=1e-4)


def test_context_loss_equals_its_formula(g):
    s, t = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 6, generator=g)
    assert context_loss(s, t).item() == pytest.approx(reference_context(s, t), rel=1e-4)


def test_temperature_decays_on_a_cosine_from_tau_max_to_tau_min():
    assert node_temperature(0, 11, 0.5, 0.07) == pytest.approx(0.5)
    assert node_temperature(5, 11, 0.5, 0.07) == pytest.approx((0.5 + 0.07) / 2)
    assert node_temperature(10, 11, 0.5, 0.07) == pytest.approx(0.07)
    assert node_temperature(2, 11, 0.5, 0.07) == pytest.approx(
        0.07 + 0.43 * 0.5 * (1 + math.cos(math.pi * 0.2)))


# --- tokens: resampling, subsets -----------------------------------------------------------------

def test_a_finer_square_grid_is_average_pooled_to_the_coarser_one(g):
    x = torch.randn(2, 16, 3, generator=g)  # a 4 x 4 grid, row-major
    out = match_token_count(x, 4)
    grid = x.view(2, 4, 4, 3)
    expected = torch.stack([grid[:, r:r + 2, c:c + 2].mean(dim=(1, 2))
                            for r in (0, 2) for c in (0, 2)], dim=1)
    torch.testing.assert_close(out, expected)


def test_a_coarser_grid_is_interpolated_and_sequences_are_resampled_in_1d(g):
    x = torch.randn(2, 4, 3, generator=g)  # a 2 x 2 grid -> 4 x 4, bilinear (half-pixel centres)
    w = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    expected = torch.einsum("rh,cw,bhwd->brcd", w, w, x.view(2, 2, 2, 3)).reshape(2, 16, 3)
    torch.testing.assert_close(match_token_count(x, 16), expected)
    constant = torch.ones(1, 5, 2) * 3
    torch.testing.assert_close(match_token_count(constant, 8), torch.ones(1, 8, 2) * 3)
    seq = torch.arange(6.0).view(1, 6, 1)
    torch.testing.assert_close(match_token_count(seq, 3).flatten(), torch.tensor([0.5, 2.5, 4.5]))
    assert match_token_count(x, 4) is x


def test_pick_tokens_draws_distinct_positions_per_image():
    torch.manual_seed(0)
    picked = pick_tokens(10, 4, batch=5)
    assert picked.shape == (5, 4)
    assert all(len(set(row)) == 4 and max(row) < 10 for row in picked.tolist())
    assert len({tuple(row) for row in picked.tolist()}) > 1
    assert pick_tokens(10, None, batch=2).tolist() == [list(range(10))] * 2
    assert pick_tokens(3, 16, batch=1).tolist() == [[0, 1, 2]]


# --- the objective ---------------------------------------------------------------------------------

def bound(student_net, teacher_net, input_shape, **params):
    torch.manual_seed(0)
    student = build_network(*student_net, num_classes=10, input_shape=input_shape)
    teacher = build_network(*teacher_net, num_classes=10, input_shape=input_shape)
    x = torch.randn(4, *input_shape)
    s_out, t_out = student(x), teacher(x)
    trg = TokenRelationGraph(**params)
    trg.bind(BindContext(student=s_out, teacher=t_out, num_classes=10, key="objectives.0"))
    step = Step(inputs=x, labels=torch.zeros(4, dtype=torch.long), index=torch.arange(4),
                student=s_out, teacher=t_out.detach(), epoch=0, max_epochs=3, global_step=0)
    return trg, student, step


VIT = ("vit_tiny", {"patch_size": 2, "dim": 16, "depth": 1, "heads": 2})
CNN = ("small_cnn", {"width": 8})


@pytest.mark.parametrize("student_net, teacher_net, input_shape", [
    (VIT, CNN, (1, 8, 8)),                                       # 16 tokens each
    (CNN, VIT, (1, 8, 8)),
    (VIT, ("resnet20", {}), (3, 16, 16)),                        # ViT 8x8 -> CNN 4x4
    (("resnet20", {}), ("vit_tiny", {"patch_size": 2, "dim": 16, "depth": 1, "heads": 2}),
     (3, 8, 8)),                                                 # CNN 2x2 -> ViT 4x4
])
def test_trg_trains_cnn_and_vit_pairs_either_way(student_net, teacher_net, input_shape):
    trg, student, step = bound(student_net, teacher_net, input_shape, tokens_per_image=3, k=2)
    terms = trg(step)
    assert set(terms) == {"edge", "node", "context"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    sum(terms.values()).backward()
    assert trg.projection.weight.grad.abs().sum() > 0
    assert trg.projection.weight.shape == (step.teacher.tokens.shape[-1],
                                           step.student.tokens.shape[-1])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_each_term_carries_its_weight_and_a_zero_weight_skips_it():
    trg, _, step = bound(VIT, CNN, (1, 8, 8), tokens_per_image=None, k=3)
    plain = trg(step)
    torch.manual_seed(1)
    trg.edge, trg.node, trg.context = 2.0, 0.0, 0.5
    weighted = trg(step)
    assert set(weighted) == {"edge", "context"}
    assert weighted["edge"].item() == pytest.approx(2 * plain["edge"].item(), rel=1e-5)
    assert weighted["context"].item() == pytest.approx(0.5 * plain["context"].item(), rel=1e-5)


def test_the_terms_read_the_projected_student_tokens_at_the_teacher_positions():
    trg, _, step = bound(VIT, CNN, (1, 8, 8), tokens_per_image=None, k=3)
    s = trg.projection(step.student.tokens)
    t = step.teacher.tokens
    terms = trg(step)
    assert terms["context"].item() == pytest.approx(context_loss(s, t).item(), rel=1e-5)
    assert terms["edge"].item() == pytest.approx(
        edge_loss(s.flatten(0, 1), t.flatten(0, 1), 3).item(), rel=1e-5)
    assert terms["node"].item() == pytest.approx(
        node_loss(s.flatten(0, 1), t.flatten(0, 1), 0.5).item(), rel=1e-5)


# --- bad input ------------------------------------------------------------------------------------

NO_TOKENS = digits_pair("trg-bad", "  - {name: ce}\n  - {name: trg, k: 4}\n")


def one_line_error(tmp_path, capsys, text):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return str(f), err[0]


def test_trg_with_a_student_without_tokens_is_one_line(tmp_path, capsys):
    f, err = one_line_error(tmp_path, capsys, NO_TOKENS)
    assert err.startswith(f"{f}:13: objectives.1: trg relates tokens"), err
    assert "student's network gives none" in err and "taps" in err


def test_trg_with_a_teacher_without_tokens_is_one_line(tmp_path, capsys):
    text = NO_TOKENS.replace("{name: small_cnn, width: 8}", "{name: mlp, hidden: [16]}")
    text = text.replace("{name: mlp, hidden: [32]}", "{name: small_cnn, width: 8}")
    f, err = one_line_error(tmp_path, capsys, text)
    assert err.startswith(f"{f}:13: objectives.1: trg relates tokens"), err
    assert "teacher's network gives none" in err


@pytest.mark.parametrize("param, line_text", [("k: 0", "k"), ("tau_min: 0.9", "tau_min"),
                                               ("tokens_per_image: 0", "tokens_per_image"),
                                               ("edge: -1", "edge")])
def test_trg_parameters_out_of_range_are_one_line(tmp_path, capsys, param, line_text):
    text = NO_TOKENS.replace("{name: mlp, hidden: [32]}", "{name: small_cnn, width: 4}")
    f, err = one_line_error(tmp_path, capsys, text.replace("k: 4", param))
    assert err.startswith(f"{f}:13: objectives.1.{line_text}: "), err
