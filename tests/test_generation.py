"""The generation task kind end to end on small arithmetic problems: the teacher stage learns
from gold rationales, its samples are cached beside its weights and filtered, and the label-only,
step-by-step and QCRD students train, validate and report; the objectives' values change what
they compute."""
from __future__ import annotations

import json

import pytest
import torch

from distill.cli import main
from distill.config.load import load_experiment
from distill.task_kinds.generation import exact_matches, trimmed
from experiment_text import arithmetic, build_variant

TINY = arithmetic("gen", 64, 3, "  - {name: qcrd, rounds_back: 1, samples: 3}\n", tail="""\
variants:
  label-only: {objectives: [{name: ce}]}
  step-by-step: {objectives: [{name: dss, samples: 3}]}
  qcrd: {}
baseline: label-only
""")


def test_exact_match_is_the_whole_label_up_to_its_end():
    labels = torch.tensor([[5, 6, 1], [5, 1, 0], [7, 1, 0]])
    generated = torch.tensor([[5, 6, 1, 0], [5, 1, 0, 0], [7, 8, 1, 0]])
    assert exact_matches(generated, labels).tolist() == [True, True, False]
    assert exact_matches(torch.tensor([[5, 6]]), labels[:1]).tolist() == [False]  # no end


def test_trimmed_drops_only_columns_no_row_uses():
    ids = torch.tensor([[3, 4, 1, 0, 0], [3, 1, 0, 0, 0]])
    assert trimmed(ids).tolist() == [[3, 4, 1], [3, 1, 0]]
    assert trimmed(torch.zeros(2, 4, dtype=torch.long)).shape == (2, 1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    f = root / "gen.yaml"
    f.write_text(TINY)
    assert main(["run", str(f), "--out", str(root / "runs")]) == 0
    return root


def test_every_variant_and_the_teacher_report_answer_accuracy(finished, capsys):
    runs = finished / "runs" / "gen"
    for variant in ("label-only", "step-by-step", "qcrd"):
        metrics = json.loads((runs / variant / "seed0" / "metrics.json").read_text())
        assert 0 <= metrics["answer_acc"] <= 100 and len(metrics["history"]) == 3
    teacher = json.loads((runs / "teacher" / "metrics.json").read_text())
    assert "answer_acc" in teacher
    assert main(["compare", str(finished / "runs"), "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    rows = {row["variant"]: row for row in table["rows"]}
    assert list(rows) == ["teacher", "label-only", "step-by-step", "qcrd"]
    assert table["metrics"][:2] == ["answer_acc", "answer_acc_best"]
    assert rows["qcrd"]["answer_acc"]["n"] == 1
    # counts describe the runs: no best mark, no difference to the baseline
    assert rows["qcrd"]["rationales_kept"]["best"] is False
    assert rows["qcrd"]["rationales_kept"]["delta"] is None


def test_the_teachers_samples_are_cached_beside_its_weights_and_counted(finished):
    runs = finished / "runs" / "gen"
    cached = list((runs / "teacher").glob("rationales-*.pt"))
    assert len(cached) == 1  # step-by-step and qcrd read the same samples
    tokens = torch.load(cached[0], weights_only=True)
    assert tokens.shape[:2] == (64, 3)
    qcrd = json.loads((runs / "qcrd" / "seed0" / "metrics.json").read_text())
    assert qcrd["rationales_sampled"] == int((tokens != 0).any(-1).sum())
    assert qcrd["rationales_kept"] + qcrd["negatives_teacher"] <= qcrd["rationales_sampled"]
    # rounds_back 1: the student's own negatives from epochs 1 and 2, one per problem
    assert qcrd["negatives_student"] == 2 * 64
    dss = json.loads((runs / "step-by-step" / "seed0" / "metrics.json").read_text())
    assert dss["rationales_kept"] == qcrd["rationales_kept"]
    assert "rationales_kept" not in json.loads(
        (runs / "label-only" / "seed0" / "metrics.json").read_text())


def modules(tmp_path, objectives: str):
    f = tmp_path / "e.yaml"
    f.write_text(arithmetic("gen", 64, 3, objectives + "\n"))
    return load_experiment(str(f))


def first_batch_terms(tmp_path, objective: str) -> dict[str, float]:
    """The objective's terms on the first training batch of a fresh (seeded) student."""
    ef = modules(tmp_path, f"  - {objective}")
    module, data = build_variant(ef, "default")
    term = module.terms[0].objective
    if hasattr(term, "gather"):
        term.pool = term.gather(data, "cpu", say=lambda _: None)
    batch = next(iter(data.train_dataloader()))
    out = term(module.kind.step(module, batch))
    return {k: v.item() for k, v in out.items()} if isinstance(out, dict) else {"": out.item()}


def test_dss_alpha_splits_the_label_and_rationale_terms(tmp_path):
    low = first_batch_terms(tmp_path, "{name: dss, rationales: gold, alpha: 0.25}")
    high = first_batch_terms(tmp_path, "{name: dss, rationales: gold, alpha: 0.75}")
    # the same student (seeded) and batch: each term scales with its share
    assert low["label"] / 0.25 == pytest.approx(high["label"] / 0.75, rel=1e-5)
    assert low["rationale"] / 0.75 == pytest.approx(high["rationale"] / 0.25, rel=1e-5)
    assert low["rationale"] > 0


def test_label_only_ce_is_the_label_sequence_cross_entropy(tmp_path):
    ce = first_batch_terms(tmp_path, "{name: ce}")
    dss = first_batch_terms(tmp_path, "{name: dss, rationales: gold, alpha: 1.0}")
    assert dss["rationale"] == 0.0 and ce[""] == pytest.approx(dss["label"], rel=1e-5)
    assert ce[""] > 1.0  # a fresh student's cross-entropy over the vocabulary


def test_gold_rationales_without_gold_are_refused(tmp_path, capsys):
    f = tmp_path / "train.jsonl"
    f.write_text('{"input": "2 + 3?", "label": "5"}\n')
    e = tmp_path / "e.yaml"
    e.write_text(TINY.replace("{name: arithmetic, train_size: 64, test_size: 16, batch_size: 16, "
                              "max_ops: 2}", f"{{name: rationale_jsonl, train: {f}, test: {f}}}"))
    assert main(["validate", str(e)]) == 2
    err = capsys.readouterr().err
    assert "teacher.objectives.0.rationales" in err and "no gold rationales" in err


@pytest.mark.parametrize("match,expected", [("exact", 25.0), ("equation", 75.0)])
def test_answers_match_exactly_or_by_the_equations_value(match, expected):
    from types import SimpleNamespace

    from distill.data.sequence_tokenizer import PieceTokenizer
    from distill.task_kinds.generation import Generation

    tok = PieceTokenizer(["(5 + 3) - 2 = 6 8 x"])
    labels = tok(["(5 + 3) - 2", "8 - 2", "6", "x"], 12)
    said = tok(["(5 + 3) - 2", "(5 + 3) - 2", "8 - 2", "3 + 3"], 12)  # right, =6, =6, not x
    net = SimpleNamespace(generate=lambda predict, max_length: said[:, :max_length])
    module = SimpleNamespace(student=SimpleNamespace(net=net))
    kind = Generation(tok, "the answer is", [], match=match)
    kind.validation_step(module, ((labels, labels, labels), labels))
    assert kind.validation_end(module) == {"answer_acc": expected}


def test_markdown_and_latex_tables_have_one_column_per_title_with_counts(finished, capsys):
    assert main(["compare", str(finished / "runs"), "--format", "md"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].count("|") == lines[1].count("|") == lines[2].count("|")
    assert main(["compare", str(finished / "runs"), "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    spec = latex.split(r"\begin{tabular}{")[1].split("}")[0]
    header = next(line for line in latex.splitlines() if line.startswith("variant"))
    assert len(spec) == header.count("&") + 1


def test_an_expression_cut_before_its_end_is_no_answer():
    from types import SimpleNamespace

    from distill.data.sequence_tokenizer import PieceTokenizer
    from distill.task_kinds.generation import Generation

    tok = PieceTokenizer(["1 + 5 12 / 20"])
    labels = tok(["1 + 5", "1 + 5"], 4)
    said = torch.cat([tok(["12 / 20"], 8)[:, :4], tok(["3 + 3"], 4)])  # "12 / 2" cut; "3 + 3"
    net = SimpleNamespace(generate=lambda predict, max_length: said[:, :max_length])
    module = SimpleNamespace(student=SimpleNamespace(net=net))
    kind = Generation(tok, "the answer is", [], match="equation")
    kind.validation_step(module, ((labels, labels, labels), labels))
    assert kind.validation_end(module) == {"answer_acc": 50.0}
