"""Small experiment files for the tests: a digits teacher (small_cnn) and student (mlp), one
epoch each, with the objectives (and any further lines) a test needs."""
from __future__ import annotations


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
