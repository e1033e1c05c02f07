"""Rationale data for sequence generation: examples of an input, its label, optionally a gold
rationale and several teacher rationales each with its final answer, laid out with the
``predict:`` / ``explain:`` task prefixes of distilling step-by-step (Hsieh et al. 2023).

Two sources: the embedded arithmetic word problems (:mod:`distill.data.arithmetic`) and a user's
JSONL files, one example per line::

    {"input": "...", "label": "...", "rationale": "...", "answer": "6",
     "rationales": [{"text": "... the answer is 6", "answer": "6"}, ...]}

``rationale`` (a gold one), ``answer`` (what a rationale must reach, when the label is not the
answer itself, e.g. an equation) and ``rationales`` (teacher samples) are optional; without the
latter the teacher rationales are sampled from the experiment's teacher."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch.utils.data import Dataset

from distill.data.base import Splits
from distill.data.declared import stand_in
from distill.data.sequence_tokenizer import make_sequence_tokenizer
from distill.errors import ConfigError, UserError, shorten
from distill.registry import datasets
from distill.task_kinds.generation import answer_after

PREDICT, EXPLAIN = "predict: ", "explain: "


@dataclass
class Example:
    input: str
    label: str
    rationale: str = ""  # a gold rationale ("" when there is none)
    samples: list[tuple[str, str]] = field(default_factory=list)  # teacher (text, answer) pairs
    answer: str = ""  # the gold answer a rationale must reach ("": the label)


@dataclass
class GivenRationales:
    """Teacher rationales brought by the data: ``tokens`` N x K x L (absent samples all padding)
    and each sample's final answer (None when absent)."""

    tokens: torch.Tensor
    answers: list[list[str | None]]


class RationaleSet(Dataset):
    """Items ``((predict source, explain source, rationale), label)`` of token ids."""

    def __init__(self, predict: torch.Tensor, explain: torch.Tensor, rationale: torch.Tensor,
                 label: torch.Tensor):
        self.predict, self.explain, self.rationale, self.label = predict, explain, rationale, label

    def __len__(self):
        return len(self.label)

    def __getitem__(self, i):
        return (self.predict[i], self.explain[i], self.rationale[i]), self.label[i]


def rationale_splits(train: list[Example], test: list[Example], tokenizer: str,
                     answer_marker: str, max_length: int, match: str = "exact") -> Splits:
    """Tokenised splits of a generation task (lengths: the longest text, at most ``max_length``)."""
    from distill.task_kinds.generation import Generation

    texts = [t for e in train for t in (PREDICT + e.input, EXPLAIN + e.input, e.label,
                                        e.rationale, *(s for s, _ in e.samples))]
    tok = make_sequence_tokenizer(tokenizer, texts)
    everything = train + test

    def width(values: list[str], what: str) -> int:
        longest = max(tok.lengths(values))
        if longest > max_length:
            raise ConfigError("data.max_length", f"the longest {what} has {longest} tokens, "
                                                 f"more than max_length {max_length}; give "
                                                 f"max_length: {longest} or shorter texts")
        return longest

    source = width([p + e.input for e in everything for p in (PREDICT, EXPLAIN)], "input")
    label = width([e.label for e in everything], "label")
    rationale = width([e.rationale for e in everything]
                      + [s for e in train for s, _ in e.samples], "rationale")

    def texts_or_nothing(values: list[str], length: int) -> torch.Tensor:
        ids = tok(values, length)
        ids[torch.tensor([not v for v in values], dtype=torch.bool)] = 0  # absent: all padding
        return ids

    def part(examples: list[Example]) -> RationaleSet:
        return RationaleSet(tok([PREDICT + e.input for e in examples], source),
                            tok([EXPLAIN + e.input for e in examples], source),
                            texts_or_nothing([e.rationale for e in examples], rationale),
                            tok([e.label for e in examples], label))

    given = None
    if train and train[0].samples:
        most = max(len(e.samples) for e in train)
        rows = [[s for s, _ in e.samples] + [""] * (most - len(e.samples)) for e in train]
        tokens = texts_or_nothing([s for row in rows for s in row], rationale).view(
            len(train), most, -1)
        answers = [[a for _, a in e.samples] + [None] * (most - len(e.samples)) for e in train]
        given = GivenRationales(tokens, answers)
    kind = Generation(tok, answer_marker, [e.answer or e.label for e in train], given, match)
    return Splits(part(train), part(test), torch.zeros(len(train), dtype=torch.long),
                  torch.zeros(len(test), dtype=torch.long), num_classes=1,
                  input_shape=(source,), kind=kind, vocab_size=tok.vocab_size,
                  text_length=max(source, label, rationale))


Length = Annotated[int, Field(ge=8, le=1024)]


@datasets.register("arithmetic")
def arithmetic(train_size: Annotated[int, Field(ge=2, le=100_000)] = 2000,
               test_size: Annotated[int, Field(ge=1, le=100_000)] = 500,
               min_ops: Annotated[int, Field(ge=1, le=8)] = 2,
               max_ops: Annotated[int, Field(ge=1, le=8)] = 4,
               max_value: Annotated[int, Field(ge=10, le=10_000)] = 99,
               seed: Annotated[int, Field(ge=0, le=2 ** 32 - 1)] = 0,
               rationale: Literal["equations", "sentences"] = "equations",
               label: Literal["equation", "answer"] = "equation",
               max_length: Length = 128) -> Splits:
    """Arithmetic word problems (embedded, generated offline): 2-4 operations, a gold
    step-by-step rationale (its equations, or whole sentences); the label is the problem's
    equation (right when it has the answer's value, as SVAMP in distilling step-by-step) or the
    answer itself; generation with predict:/explain: tasks."""
    from distill.data.arithmetic import ANSWER_MARKER, equations, expression, split_problems

    if min_ops > max_ops:
        raise ConfigError("data.min_ops", f"min_ops {min_ops} is above max_ops {max_ops}; give "
                                          f"min_ops <= max_ops")
    train, test = split_problems(train_size, test_size, seed, min_ops=min_ops, max_ops=max_ops,
                                 max_value=max_value)
    gold = equations if rationale == "equations" else str
    examples = [[Example(p.question, expression(p.rationale) if label == "equation"
                         else str(p.answer), gold(p.rationale), answer=str(p.answer))
                 for p in part] for part in (train, test)]
    return rationale_splits(*examples, "pieces", ANSWER_MARKER, max_length,
                            match="equation" if label == "equation" else "exact")


def read_examples(path: str, key: str, answer_marker: str) -> list[Example]:
    """The examples of a JSONL file; every problem is one line naming the file and line. Teacher
    rationales are given on every line or on none."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(key, f"{shorten(path, 80)} is not a file; give a JSONL file of "
                               f"examples")
    examples = []
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue

            def refuse(message: str):
                return UserError(f"{message}; fix this line (key {key})", file=path, line=number)

            try:
                item = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise refuse("not UTF-8") from None
            except json.JSONDecodeError as e:
                raise refuse(f"not JSON ({e.msg})") from None
            if not isinstance(item, dict):
                raise refuse("not a JSON object with \"input\" and \"label\"")
            for name in ("input", "label"):
                if not isinstance(item.get(name), str) or not item[name].strip():
                    raise refuse(f"\"{name}\" is missing or not a non-empty string")
            rationale, answer = item.get("rationale", ""), item.get("answer", "")
            for name, value in (("rationale", rationale), ("answer", answer)):
                if not isinstance(value, str):
                    raise refuse(f"\"{name}\" is not a string")
            given = item.get("rationales", [])
            if not isinstance(given, list) or not all(isinstance(g, dict) for g in given):
                raise refuse("\"rationales\" is not a list of {\"text\": ..., \"answer\": ...}")
            pairs = []
            for k, sample in enumerate(given):
                text = sample.get("text")
                if not isinstance(text, str) or not text.strip():
                    raise refuse(f"rationale {k} has no \"text\"")
                said = sample.get("answer", answer_after(text, answer_marker))
                if not isinstance(said, str) or not said.strip():
                    raise refuse(f"rationale {k} has no answer; give \"answer\" or end its text "
                                 f"with '{answer_marker} ...'")
                pairs.append((text, said.strip()))
            if examples and bool(examples[0].samples) != bool(pairs):
                raise refuse("\"rationales\" on some lines only; give them on every line or on "
                             "none")
            examples.append(Example(item["input"], item["label"], rationale, pairs, answer))
    if not examples:
        raise ConfigError(key, f"{shorten(path, 80)} holds no examples; give one JSON object "
                               f"per line")
    return examples


@stand_in("rationale_jsonl")
def _rationale_jsonl_declared(tokenizer: str = "pieces", answer_marker: str = "the answer is",
                              max_length: int = 128, match: str = "exact",
                              **_) -> tuple[Splits, str]:
    """Four made-up problems with rationales and teacher samples, for ``validate
    --without-data``; the built-in tokenizer stands in for a tokenizer folder."""
    train = [Example(f"{a} plus {b}", str(a + b), f"{a} + {b} = {a + b}. {answer_marker} {a + b}",
                     [(f"{a} + {b} = {a + b}. {answer_marker} {a + b}", str(a + b))])
             for a, b in ((1, 2), (3, 4), (5, 6), (7, 8))]
    test = [Example(e.input, e.label, e.rationale) for e in train]
    splits = rationale_splits(train, test, tokenizer if tokenizer == "pieces" else "pieces",
                              answer_marker, max_length, match)
    return splits, "four made-up problems, the built-in tokenizer"


@datasets.register("rationale_jsonl")
def rationale_jsonl(train: str, test: str, tokenizer: str = "pieces",
                    answer_marker: Annotated[str, Field(min_length=1, max_length=200)] =
                    "the answer is", max_length: Length = 128,
                    match: Literal["exact", "equation"] = "exact") -> Splits:
    """Your own generation data: JSONL lines with input, label, optional gold rationale, answer
    and teacher rationales (each with its answer); ``tokenizer``: pieces (built in) or a local
    Hugging Face folder; ``match: equation`` scores labels that are arithmetic expressions by
    value."""
    train_examples = read_examples(train, "data.train", answer_marker)
    test_examples = [Example(e.input, e.label, e.rationale)
                     for e in read_examples(test, "data.test", answer_marker)]
    return rationale_splits(train_examples, test_examples, tokenizer, answer_marker, max_length,
                            match)
