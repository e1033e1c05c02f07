"""Retrieval: the networks, the candidate lists, the contrastive loss against its formula, the
evaluation against a brute-force ranking, and the task kind refusing objectives of another kind."""
from __future__ import annotations

import math

import pytest
import torch

from distill.cli import main
from distill.config import load_experiment
from distill.data.digit_captions import digit_captions
from distill.engine.build import build_data, build_module, build_teacher
from distill.evaluation.retrieval_recall import hit_rates
from distill.objectives.candidates import hardest, sample_candidates
from distill.objectives.itc import itc_loss
from experiment_text import RETRIEVAL
from students import build_network

SHAPES = dict(num_classes=1, input_shape=(1, 8, 8), vocab_size=30, text_length=6)


def toy_batch(n=5):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 8, 8, generator=g)
    texts = torch.randint(2, 30, (n, 6), generator=g)
    texts[:, 4:] = 0  # padding
    return images, texts


def test_the_cross_encoder_scores_pairs_jointly_and_its_towers_embed():
    net = build_network("cross_encoder", {"dim": 16, "embed_dim": 8}, **SHAPES).eval()
    images, texts = toy_batch()
    out = net(images, texts)
    assert out.embedding.shape == out.text_embedding.shape == (5, 8)
    assert torch.allclose(out.embedding.norm(dim=1), torch.ones(5))
    inner = net.net
    sides = inner.sides(images, texts)
    q, c = torch.tensor([0, 0, 3]), torch.tensor([1, 4, 3])
    joint = inner.joint(sides, q, c)
    # the same as matching the aligned pairs directly: towers once per item changes nothing
    assert torch.allclose(joint, inner.match(images[q], texts[c]), atol=1e-5)
    # the score depends on the caption: it is joint, not a product of two embeddings
    assert not torch.allclose(inner.match(images[:1], texts[1:2]), inner.match(images[:1], texts[2:3]))


def test_padding_does_not_change_a_captions_embedding():
    net = build_network("dual_encoder", {"dim": 16, "embed_dim": 8}, **SHAPES).eval()
    images, texts = toy_batch()
    wider = torch.cat([texts, torch.zeros(5, 0, dtype=torch.long)], dim=1)
    assert torch.allclose(net.net.encode_texts(texts), net.net.encode_texts(wider))
    changed = texts.clone()
    changed[:, 5] = 7  # a word where there was padding
    assert not torch.allclose(net.net.encode_texts(texts), net.net.encode_texts(changed))


def test_a_text_network_on_a_dataset_without_text_is_one_clear_error():
    from distill.errors import UserError
    with pytest.raises(UserError, match="reads text"):
        build_network("dual_encoder", {}, num_classes=10, input_shape=(1, 8, 8))


def test_candidates_start_with_the_own_caption_and_hold_only_irrelevant_others():
    torch.manual_seed(0)
    keys = torch.tensor([0, 1, 1, 2, 3, 4, 5, 6, 0, 7])
    c = sample_candidates(keys, 5)
    assert c.shape == (10, 5) and (c[:, 0] == torch.arange(10)).all()
    assert (keys[c[:, 1:]] != keys[:, None]).all()
    assert all(len(set(row.tolist())) == 5 for row in c)


def authors_selection(scores, keep):
    """DCD's released code: sort by the teacher, keep the top ``keep``, force the positive (column
    0) in by replacing the last kept one when it is missing, then put it first."""
    out = []
    for row in scores.tolist():
        order = sorted(range(len(row)), key=lambda k: -row[k])[:keep]
        if 0 not in order:
            order[-1] = 0
        out.append([0] + [k for k in order if k != 0])
    return torch.tensor(out)


def test_hardest_is_the_authors_selection_with_the_positive_first():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(50, 16, generator=g)
    assert torch.equal(hardest(scores, 8), authors_selection(scores, 8))


def test_itc_loss_equals_its_formula_with_several_positives():
    g = torch.Generator().manual_seed(2)
    scores, keys = torch.randn(4, 4, generator=g) * 3, torch.tensor([0, 1, 0, 2])

    def one_way(s, k):
        total = 0.0
        for i, row in enumerate(s.tolist()):
            z = math.log(sum(math.exp(v) for v in row))
            pos = [j for j in range(len(row)) if k[j] == k[i]]
            total += -sum(row[j] - z for j in pos) / len(pos)
        return total / len(s)

    expected = (one_way(scores, keys.tolist()) + one_way(scores.T, keys.tolist())) / 2
    assert itc_loss(scores, keys).item() == pytest.approx(expected, rel=1e-5)


def test_digit_captions_describe_content_and_relevance_is_content():
    splits = digit_captions()
    assert len(splits.train) == 5 * 1437 and len(splits.test) == 360
    assert len(splits.kind.texts) == 5 * 360
    keys = splits.test_targets
    # several images share a content, so relevance is not "its own image"
    assert len(set(keys.tolist())) < len(keys)
    (image, tokens), key = splits.train[0]
    assert image.shape == (1, 8, 8) and tokens.shape == (12,)
    # the five captions of one image are worded differently
    first = splits.train.tokens[:5]
    assert len({tuple(t.tolist()) for t in first}) == 5




@pytest.fixture
def retrieval_file(tmp_path):
    f = tmp_path / "ret.yaml"
    f.write_text(RETRIEVAL)
    return f


def test_the_evaluation_equals_a_brute_force_ranking(retrieval_file):
    exp = load_experiment(str(retrieval_file)).variants["dcd"]
    data = build_data(exp, 0)
    kind = data.kind
    images = torch.stack([data.test_set[i][0] for i in range(40)])
    keys = torch.stack([data.test_set[i][1] for i in range(40)])
    student = build_module(exp, data, build_teacher(exp, data, None)).student.net.eval()
    values, seconds = kind.evaluate(student, images, keys)
    with torch.no_grad():
        scores = student.encode_images(images) @ student.encode_texts(kind.texts).T
    i2t = hit_rates(lambda rows: scores[rows], 40, keys, kind.text_keys)
    t2i = hit_rates(lambda rows: scores.T[rows], len(kind.texts), kind.text_keys, keys)
    assert values["i2t_r5"] == pytest.approx(i2t[5], abs=1e-3)
    assert values["t2i_r10"] == pytest.approx(t2i[10], abs=1e-3)
    assert values["rsum"] == pytest.approx(sum(i2t.values()) + sum(t2i.values()), abs=1e-3)
    assert seconds["i2t"] > 0 and seconds["t2i"] > 0


def test_re_ranking_a_whole_small_gallery_is_ranking_by_the_joint_score(retrieval_file):
    exp = load_experiment(str(retrieval_file)).variants["dcd"]
    data = build_data(exp, 0)
    kind = type(data.kind)(data.kind.texts[:30], data.kind.text_keys[:30], rerank=30)
    images = torch.stack([data.test_set[i][0] for i in range(12)])
    keys = torch.stack([data.test_set[i][1] for i in range(12)])
    teacher = build_teacher(exp, data, None).network.net.eval()
    values, _ = kind.evaluate(teacher, images, keys)
    with torch.no_grad():
        joint = torch.stack([teacher.match(images[i].expand(30, -1, -1, -1), kind.texts)
                             for i in range(12)])
    expected = hit_rates(lambda rows: joint[rows], 12, keys, kind.text_keys)
    assert values["i2t_r1"] == pytest.approx(expected[1], abs=1e-3)
    assert values["i2t_r5"] == pytest.approx(expected[5], abs=1e-3)


def test_every_retrieval_objective_trains_the_student_only(retrieval_file):
    ef = load_experiment(str(retrieval_file))
    for variant in ef.variants:
        exp = ef.variants[variant]
        data = build_data(exp, 0)
        module = build_module(exp, data, build_teacher(exp, data, None))
        batch = next(iter(data.train_dataloader()))
        torch.manual_seed(0)
        step = module.make_step(batch)
        total = sum(sum(v.values()) if isinstance(v, dict) else v
                    for v in (t.objective(step) for t in module.terms))
        total.backward()
        assert torch.isfinite(total)
        assert any(p.grad is not None and p.grad.abs().sum() > 0
                   for p in module.student.parameters())
        if module.teacher is not None:
            assert all(p.grad is None for p in module.teacher.parameters())


@pytest.mark.parametrize("old,new,key,words", [
    ("  - {name: itc}\n  - {name: dcd, candidates: 8, hard_negatives: 3}",
     "  - {name: itc}\n  - {name: kd}", "objectives.1", ["kd serves classification", "retrieval"]),
    ("{name: dcd, candidates: 8, hard_negatives: 3}", "{name: dcd, candidates: 8, hard_negatives: 8}",
     "objectives.1.hard_negatives", ["more than the 8 candidates"]),
    ("{name: dcd, candidates: 8, hard_negatives: 3}", "{name: dcd, candidates: 40, hard_negatives: 3}",
     "objectives.1.candidates", ["a batch holds 32"]),
    ("student:\n  net: {name: dual_encoder", "student:\n  net: {name: mlp", "student.net", []),
])
def test_impossible_retrieval_set_ups_are_one_line(tmp_path, capsys, old, new, key, words):
    f = tmp_path / "bad.yaml"
    text = RETRIEVAL.replace(old, new)
    if "name: mlp" in text:  # a classification network cannot embed captions: the reverse case
        text = text.replace("name: mlp, dim: 16, embed_dim: 16, image_args: {width: 4}", "name: mlp")
        words, key = ["network 'mlp' has no caption side"], "student.net.name"
    f.write_text(text)
    assert main(["validate", str(f)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f": {key}" in lines[0], lines
    for w in words:
        assert w in lines[0], lines[0]


def test_a_retrieval_objective_on_a_classification_set_is_one_line(tmp_path, capsys):
    from experiment_text import digits_pair
    f = tmp_path / "bad.yaml"
    f.write_text(digits_pair("x", "  - {name: ce}\n  - {name: itc}\n"))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert "objectives.1: itc serves retrieval tasks, but this dataset is a classification set" in err


def test_a_retrieval_network_on_a_classification_set_is_one_line(tmp_path, capsys):
    from experiment_text import digits_pair
    f = tmp_path / "bad.yaml"
    f.write_text(digits_pair("x", "  - {name: ce}\n").replace("net: {name: mlp, hidden: [32]}",
                                                              "net: {name: dual_encoder}"))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "student.net: network 'dual_encoder' reads text" in err, err


def test_a_dual_encoder_student_is_distilled_through_its_own_score_head():
    from distill.objectives.candidates import StudentScoreHead
    from distill.task_kinds.retrieval import PairScorer
    net = build_network("dual_encoder", {"dim": 16, "embed_dim": 8}, **SHAPES).eval()
    images, texts = toy_batch()
    out = net(images, texts)
    scorer = PairScorer(net.net, lambda: out, images, texts, grad=False)
    q, c = torch.arange(5), torch.tensor([[0, 1, 2]] * 5)
    cos = (out.embedding[:, None] * out.text_embedding[c]).sum(-1)
    assert torch.allclose(scorer(q, c), net.net.log_scale.exp() * cos, atol=1e-5)
    head = StudentScoreHead()
    with torch.no_grad():
        head.log_a.fill_(math.log(3.0))
        head.b.fill_(-2.0)
    assert torch.allclose(head(scorer, q, c), 3.0 * cos - 2.0, atol=1e-5)
    # the network's own scale (its contrastive temperature) gets no gradient from the head
    head(scorer, q, c).sum().backward()
    assert net.net.log_scale.grad is None and head.log_a.grad is not None
