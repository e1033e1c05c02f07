"""Small experiment files for the tests: a digits teacher (small_cnn) and student (mlp), one
epoch each, with the objectives (and any further lines) a test needs."""
from __future__ import annotations

import torch

from distill.engine.build import build_data, build_module, build_teacher


def digits_pair(name: str, objectives: str, seeds: str = "[0]", tail: str = "") -> str:
    """``objectives``: the YAML list items (``"  - {name: ce}\\n"`` ...); ``tail``: lines after it."""
    return f"""\
name: {name}
seeds: {seeds}
data: {{name: digits, batch_size: 64}}
teacher:
  role: frozen
  net: {{name: small_cnn, width: 8}}
  train: {{epochs: 1}}
student:
  net: {{name: mlp, hidden: [32]}}
train: {{epochs: 1}}
objectives:
{objectives}{tail}"""


# a small retrieval experiment: cross-encoder teacher, dual-encoder student, three variants
RETRIEVAL = """\
name: ret
seeds: [0]
data: {name: digit_captions, batch_size: 32}
teacher:
  role: frozen
  net: {name: cross_encoder, dim: 16, embed_dim: 16}
  objectives: [{name: itc}, {name: itm}]
  train: {epochs: 1}
student:
  net: {name: dual_encoder, dim: 16, embed_dim: 16, image_args: {width: 4}}
train: {epochs: 1, optimizer: {name: adamw, lr: 1.0e-3}}
objectives:
  - {name: itc}
  - {name: dcd, candidates: 8, hard_negatives: 3}
variants:
  contrastive: {objectives: [{name: itc}]}
  score-kd: {objectives: [{name: itc}, {name: score_kd, candidates: 8}]}
  dcd: {}
"""


def arithmetic(name: str, train_size: int, epochs: int, objectives: str, tail: str = "") -> str:
    """A small generation experiment: arithmetic problems of 2 operations, a tiny seq2seq teacher
    trained on the gold rationales for one epoch, a tiny seq2seq student; ``objectives``: the YAML
    list items, ``tail``: lines after them."""
    return f"""\
name: {name}
seeds: [0]
data: {{name: arithmetic, train_size: {train_size}, test_size: 16, batch_size: 16, max_ops: 2}}
threads: 1
teacher:
  role: frozen
  net: {{name: seq2seq, dim: 16, layers: 1, heads: 2}}
  objectives: [{{name: dss, rationales: gold}}]
  train: {{epochs: 1, optimizer: {{name: adamw, lr: 1.0e-3}}}}
student:
  net: {{name: seq2seq, dim: 16, layers: 1, heads: 2}}
train: {{epochs: {epochs}, optimizer: {{name: adamw, lr: 1.0e-3}}}}
objectives:
{objectives}{tail}"""


SEQ2SEQ = "{name: seq2seq, dim: 16, layers: 1, heads: 2}"


def own_data(name: str, train, test, objective: str, net: str = SEQ2SEQ, epochs: int = 2,
             batch_size: int = 4) -> str:
    """A generation experiment on JSONL files (``rationale_jsonl``) without a teacher: one
    student, one objective (a YAML flow mapping)."""
    return f"""\
name: {name}
seeds: [0]
data: {{name: rationale_jsonl, train: {train}, test: {test}, batch_size: {batch_size}}}
threads: 1
student:
  net: {net}
train: {{epochs: {epochs}, optimizer: {{name: adamw, lr: 1.0e-3}}}}
objectives:
  - {objective}
"""


def build_variant(experiment, variant: str):
    """The module and data of one variant of a loaded experiment file, at seed 0."""
    exp = experiment.variants[variant]
    torch.manual_seed(0)
    data = build_data(exp, 0)
    return build_module(exp, data, build_teacher(exp, data, None)), data
