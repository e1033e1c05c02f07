"""Sequence generation (distilling step-by-step, Hsieh et al. 2023): one sequence-to-sequence
network, two tasks by prefix, ``"predict: x" -> label`` and ``"explain: x" -> rationale``.

Batches are ``((predict, explain, rationale), label, index)`` of token ids (pad 0, end 1): the
step's ``inputs`` are the predict sources and its ``labels`` the label sequences; objectives score
any (source, target) pair through :class:`SequenceScorer` (``step.extra["student_seq"]``).
Validation decodes each predict source greedily; the headline is the answer accuracy (the decoded
label equals the gold one exactly, as the step-by-step authors' ``compute_text_acc``)."""
from __future__ import annotations

import ast
import operator
import string

import torch

from distill.errors import ConfigError
from distill.task_kinds.base import TaskKind, eval_forward, two_input_step


class SequenceScorer:
    """One network's token-mean negative log-likelihood of targets given sources, the
    sequence-level cross-entropy of Hugging Face's ``loss``. Each sources tensor is encoded once
    per step however many targets are scored against it."""

    def __init__(self, net, grad: bool = True):
        self.net, self.grad = net, grad
        self._memory: dict[int, tuple[torch.Tensor, object]] = {}

    def memory(self, sources: torch.Tensor):
        kept = self._memory.get(id(sources))
        if kept is None or kept[0] is not sources:  # with its graph, whoever asks first
            with torch.set_grad_enabled(self.grad):
                kept = (sources, self.net.encode(sources))
            self._memory[id(sources)] = kept
        return kept[1]

    def nll(self, sources: torch.Tensor, targets: torch.Tensor,
            repeats: int | torch.Tensor = 1) -> torch.Tensor:
        """Per target row: the mean NLL of its real tokens (end of sequence included). Targets
        are ``repeats`` rows per source row, in source order; an all-padding row gives 0."""
        memory = self.memory(sources)
        if not (isinstance(repeats, int) and repeats == 1):
            memory = self.net.expand(memory, repeats)
        with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
            per_token = self.net.token_nll(sources, targets, memory=memory)
        count = (targets != 0).sum(dim=1)
        return per_token.sum(dim=1) / count.clamp(min=1)


def answer_after(text: str, marker: str) -> str | None:
    """The text after the last ``marker``, without the trailing punctuation; None without one."""
    at = text.lower().rfind(marker.lower())
    if at < 0:
        return None
    answer = text[at + len(marker):].rstrip(string.punctuation + string.whitespace).strip()
    return answer or None


OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
             ast.Div: operator.truediv}


def equation_value(text: str) -> float | None:
    """The value of an arithmetic expression of numbers, + - * / and parentheses (parsed, never
    executed); None for anything else, a division by zero or text longer than 500 characters."""
    if len(text) > 500:
        return None

    def value(node):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError("not arithmetic")

    try:
        return value(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError, OverflowError):
        return None


def trimmed(ids: torch.Tensor) -> torch.Tensor:
    """``ids`` (... x L, padded with 0) without the padding columns no row uses."""
    used = (ids != 0).reshape(-1, ids.shape[-1]).any(dim=0)
    width = int(used.nonzero().max()) + 1 if used.any() else 1
    return ids[..., :width]


def exact_matches(generated: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row: the generated ids equal the label's up to and including its end of sequence."""
    width = labels.shape[1]
    generated = generated[:, :width]
    if generated.shape[1] < width:
        generated = torch.nn.functional.pad(generated, (0, width - generated.shape[1]))
    return (generated == labels).all(dim=1)


class Generation(TaskKind):
    """``tokenizer`` decodes ids to text; ``answer_marker`` ends a rationale before its answer
    (``"... the answer is 6"``); ``train_answers`` are the training problems' gold answers as
    text (what a rationale's answer must equal); ``given`` the teacher rationales the data brings
    (:class:`~distill.data.rationales.GivenRationales`), or None when they are to be sampled from
    a teacher. ``match``: a prediction is right when its ids equal the label's (``exact``), or
    when both are arithmetic expressions of the same value (``equation``, the step-by-step
    authors' SVAMP metric)."""

    name = "generation"
    headline = "answer_acc"
    caches_teacher = False
    has_classes = False

    def __init__(self, tokenizer, answer_marker: str, train_answers: list[str], given=None,
                 match: str = "exact"):
        self.tokenizer, self.answer_marker = tokenizer, answer_marker
        self.train_answers, self.given, self.match = train_answers, given, match
        self._correct, self._total = 0, 0

    def metrics(self, num_classes):
        return {}

    def check_network(self, net, name, key):
        if not hasattr(net.net, "generate"):
            raise ConfigError(key, f"network {name!r} does not generate sequences; a generation "
                                   f"set needs a sequence-to-sequence network (seq2seq, t5)")

    def probe(self, net, data):
        (predict, _, _), label = data.splits.train[0]
        return eval_forward(net, predict[None], label[None])

    def answer(self, rationales: list[str]) -> list[str | None]:
        """Each rationale's final answer: the text after the last answer marker."""
        return [answer_after(r, self.answer_marker) for r in rationales]

    def step(self, module, batch):
        (predict, explain, rationale), labels, index = batch[0], batch[1], batch[2]
        predict, explain, rationale, labels = map(trimmed, (predict, explain, rationale, labels))
        step = two_input_step(module, predict, labels, index, predict, labels)
        step.extra = {"explain": explain, "rationale": rationale,
                      "student_seq": SequenceScorer(module.student.net)}
        return step

    def validation_step(self, module, batch):
        (predict, _, _), labels = batch[0], batch[1]
        if self.match == "equation":  # any expression of the label's value, up to the longest
            generated = module.student.net.generate(trimmed(predict), max_length=labels.shape[1])
            ended = (generated == 1).any(dim=1).tolist()  # a cut expression is no answer
            pairs = zip(self.tokenizer.decode(generated), self.tokenizer.decode(labels), ended)
            self._correct += sum(end and (v := equation_value(p)) is not None
                                 and v == equation_value(g) for p, g, end in pairs)
        else:
            predict, labels = trimmed(predict), trimmed(labels)
            generated = module.student.net.generate(predict, max_length=labels.shape[1])
            self._correct += int(exact_matches(generated, labels).sum())
        self._total += len(labels)

    def validation_end(self, module):
        correct, total = self._correct, self._total
        trainer = getattr(module, "_trainer", None)  # None when validated by hand
        if trainer is not None and trainer.world_size > 1:  # each generated for its share
            counts = torch.tensor([correct, total], dtype=torch.float64, device=module.device)
            correct, total = trainer.strategy.reduce(counts, reduce_op="sum").tolist()
        acc = round(100.0 * correct / max(total, 1), 4)
        self._correct, self._total = 0, 0
        return {"answer_acc": acc}

    def results(self, module, data, history):
        return {"answer_acc": history[-1], "answer_acc_best": max(history)}
