"""Bring your own generation data: JSONL examples with teacher rationales (no teacher needed), a
Hugging Face T5 student built from a config; and every bad input is one line, exit 2."""
from __future__ import annotations

import json

import pytest

from distill.cli import main
from experiment_text import SEQ2SEQ, own_data

T5 = ("{name: t5, config: {d_model: 16, d_ff: 32, num_layers: 1, num_decoder_layers: 1, "
      "num_heads: 2, d_kv: 8}}")


def line(question: str, label: str, samples: list[tuple[str, str | None]] | None = None) -> str:
    item = {"input": question, "label": label}
    if samples is not None:
        item["rationales"] = [{"text": t, **({"answer": a} if a is not None else {})}
                              for t, a in samples]
    return json.dumps(item)


def write(tmp_path, train_lines: list[str], objective: str = "{name: qcrd, rounds_back: 1}",
          net: str = SEQ2SEQ, test_lines: list[str] | None = None):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    test.write_text("\n".join(test_lines or [line("1 + 1?", "2")]) + "\n", encoding="utf-8")
    f = tmp_path / "own.yaml"
    f.write_text(own_data("own", train, test, objective, net))
    return f


GOOD = [line("2 plus 3?", "5", [("2 + 3 = 5. the answer is 5", None),
                                ("2 + 3 = 5. the answer is 5", "5"),
                                ("2 + 3 = 6. the answer is 6", "6")]),
        line("4 minus 1?", "3", [("4 - 1 = 3", "3"), ("4 - 1 = 2", "2"), ("4 - 1 = 2", "2")]),
        line("2 times 2?", "4", [("2 * 2 = 4. the answer is 4", None)]),
        line("6 over 2?", "3", [("6 / 2 = 3. the answer is 3", None),
                                ("6 / 2 = 4. the answer is 4", None)])]


def test_given_rationales_train_qcrd_without_a_teacher(tmp_path):
    f = write(tmp_path, GOOD)
    assert main(["run", str(f), "--out", str(tmp_path / "runs")]) == 0
    metrics = json.loads((tmp_path / "runs" / "own" / "default" / "seed0" /
                          "metrics.json").read_text())
    # 9 samples; kept: problem 1 two (one distinct), problem 3 one, problem 4 a 1-1 tie with gold
    # one; problem 2's majority (2) is not the label: none kept
    assert metrics["rationales_sampled"] == 9
    assert metrics["rationales_kept"] == 4
    assert metrics["problems_without_positive"] == 1
    # failed, distinct per problem: "= 6"; "= 3" and "= 2" (the label lost the vote); none; "= 4"
    assert metrics["negatives_teacher"] == 4
    assert metrics["negatives_student"] == 4  # epoch 1, rounds_back 1: one per problem


def test_a_t5_student_built_from_a_config_trains_on_the_same_data(tmp_path):
    pytest.importorskip("transformers")
    f = write(tmp_path, GOOD, objective="{name: dss}", net=T5)
    assert main(["run", str(f), "--out", str(tmp_path / "runs")]) == 0
    metrics = json.loads((tmp_path / "runs" / "own" / "default" / "seed0" /
                          "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["rationales_kept"] == 4


BAD = [
    (["{not json"], "train.jsonl:1", "not JSON"),
    ([line("a?", "1", []), "[1, 2]"], "train.jsonl:2", "not a JSON object"),
    ([json.dumps({"input": "a?"})], "train.jsonl:1", "\"label\" is missing"),
    ([json.dumps({"input": "", "label": "1"})], "train.jsonl:1", "\"input\" is missing"),
    ([line("a?", "1", [("1 + 0 = 1", None)])], "train.jsonl:1", "rationale 0 has no answer"),
    ([line("a?", "1", [("x. the answer is 1", None)]), line("b?", "2")], "train.jsonl:2",
     "on some lines only"),
    ([json.dumps({"input": "a?", "label": "1", "rationales": "text"})], "train.jsonl:1",
     "not a list"),
    ([], "data.train", "holds no examples"),
]


@pytest.mark.parametrize("lines,where,words", BAD)
def test_bad_jsonl_lines_are_one_line_naming_file_and_line(tmp_path, capsys, lines, where, words):
    f = write(tmp_path, lines, objective="{name: ce}")
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert where in err and words in err, err


def test_jsonl_that_is_not_utf8_is_one_line(tmp_path, capsys):
    f = write(tmp_path, [line("a?", "1")], objective="{name: ce}")
    (tmp_path / "train.jsonl").write_bytes(b'{"input": "\xff", "label": "1"}\n')
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.jsonl:1" in err and "not UTF-8" in err


@pytest.mark.parametrize("objective,words", [
    ("{name: kd}", "kd serves classification tasks, but this dataset is a generation set"),
    ("{name: ce, label_smoothing: 0.1}", "objectives.0.label_smoothing: label_smoothing applies"),
    ("{name: qcrd}", "add a `teacher:` to sample them from"),
])
def test_objectives_that_cannot_serve_this_generation_set_are_refused(tmp_path, capsys,
                                                                      objective, words):
    f = write(tmp_path, [line("a?", "1"), line("b?", "2")], objective=objective)
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err


def test_a_generation_objective_on_a_classification_set_is_refused(tmp_path, capsys):
    f = tmp_path / "e.yaml"
    f.write_text("name: x\ndata: {name: digits}\nstudent:\n  net: {name: mlp}\n"
                 "objectives: [{name: dss}]\n")
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert "dss serves generation tasks, but this dataset is a classification set" in err


def test_a_classification_network_or_imbalance_on_a_generation_set_is_refused(tmp_path, capsys):
    f = write(tmp_path, [line("a?", "1")], objective="{name: ce}", net="{name: mlp}")
    assert main(["validate", str(f)]) == 2
    assert "student.net.name: network 'mlp' does not generate sequences" in \
        capsys.readouterr().err
    f.write_text(f.read_text().replace("batch_size: 4", "batch_size: 4, imbalance: 0.1")
                 .replace("{name: mlp}", SEQ2SEQ))
    assert main(["validate", str(f)]) == 2
    assert "data.imbalance: rationale_jsonl is a generation set" in capsys.readouterr().err


@pytest.mark.parametrize("extra,key", [
    (", answer_marker: ''", "data.answer_marker"),
    (", max_length: 4", "data.max_length"),
    (", max_length: 8", "the longest input has"),
    (", tokenizer: /nonexistent/folder", "data.tokenizer"),
])
def test_bad_data_values_are_one_line_naming_the_key(tmp_path, capsys, extra, key):
    f = write(tmp_path, [line("a question of many more words than eight?", "1")],
              objective="{name: ce}")
    f.write_text(f.read_text().replace("batch_size: 4", "batch_size: 4" + extra))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err, err


def test_a_teacher_checkpoint_in_a_read_only_folder_still_gives_rationales(tmp_path, capsys,
                                                                         monkeypatch):
    """Sampled rationales are kept beside the teacher's weights when that folder is writable;
    otherwise they are sampled and used all the same, and the output says so."""
    import torch

    import teachers.rationale_source as source
    from distill.data.rationales import rationale_jsonl
    from students import build_network

    f = write(tmp_path, [line("2 plus 3?", "5"), line("1 plus 1?", "2")],
              objective="{name: dss, samples: 2}")
    splits = rationale_jsonl(str(tmp_path / "train.jsonl"), str(tmp_path / "test.jsonl"))
    net = build_network("seq2seq", {"dim": 16, "layers": 1, "heads": 2}, 1, (8,),
                        vocab_size=splits.vocab_size, text_length=splits.text_length)
    weights = tmp_path / "given" / "teacher.pt"
    weights.parent.mkdir()
    torch.save(net.net.state_dict(), weights)
    f.write_text(f.read_text().replace("student:", "teacher:\n  role: frozen\n  net: {name: "
                                       "seq2seq, dim: 16, layers: 1, heads: 2}\n  checkpoint: "
                                       f"{weights}\nstudent:"))

    def read_only(obj, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(source, "atomic_save", read_only)
    assert main(["run", str(f), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "sampled 2 per problem for 2 problems" in out
    assert "not kept" in out and "is not writable" in out
    assert not list(weights.parent.glob("rationales-*"))
    metrics = json.loads((tmp_path / "runs" / "own" / "default" / "seed0" /
                          "metrics.json").read_text())
    assert metrics["rationales_sampled"] <= 4  # an untrained teacher may end a sample at once


def word_level_tokenizer(folder, words: list[str]) -> None:
    """A Hugging Face tokenizer folder with T5's special ids (pad 0, end 1, unknown 2) that does
    not add the end of sequence itself, written offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)


def test_a_hugging_face_tokenizer_folder_serves_t5_on_own_data(tmp_path):
    pytest.importorskip("transformers")
    from distill.data.sequence_tokenizer import EOS, HFSequenceTokenizer

    folder = tmp_path / "tok"
    words = sorted(set("predict explain : plus minus times over ? . = + - * / the answer is so"
                       .split()) | {str(n) for n in range(13)})
    word_level_tokenizer(folder, words)
    tok = HFSequenceTokenizer(str(folder))
    ids = tok(["2 plus 3 ?", "4 minus 1 ? and more words than fit"], 6)
    assert ids[0].tolist()[:5] == [tok.tokenizer.convert_tokens_to_ids(w) for w in
                                   ("2", "plus", "3", "?")] + [EOS]
    assert ids[1, -1].item() == EOS  # cut, still ended
    assert tok.decode(ids[:1]) == ["2 plus 3 ?"]
    f = write(tmp_path, GOOD, objective="{name: dss}", net=T5)
    f.write_text(f.read_text().replace("batch_size: 4", f"batch_size: 4, tokenizer: {folder}"))
    assert main(["run", str(f), "--out", str(tmp_path / "runs")]) == 0
    metrics = json.loads((tmp_path / "runs" / "own" / "default" / "seed0" /
                          "metrics.json").read_text())
    assert metrics["rationales_kept"] == 4


def test_a_tokenizer_folder_without_a_tokenizer_is_one_line(tmp_path, capsys):
    pytest.importorskip("transformers")
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text("{}")
    f = write(tmp_path, [line("a?", "1")], objective="{name: ce}")
    f.write_text(f.read_text().replace("batch_size: 4", f"batch_size: 4, tokenizer: {folder}"))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.tokenizer" in err and "no usable tokenizer" in err
