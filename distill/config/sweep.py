"""Sweeps: ``sweep: {objectives.1.temperature: [1, 2, 4, 8], train.optimizer.lr: [0.01, 0.05]}``
in a file (or ``--sweep key=v1,v2``) expands the file's base configuration into one variant per
combination of values, named after them (``temperature_1-lr_0.01``), each validated like any
variant. Key paths are those of ``--set`` (:mod:`distill.config.key_path`)."""
from __future__ import annotations

import itertools
from typing import Any

from distill.errors import UserError, shorten

MAX_VARIANTS = 256  # combinations of one sweep


def parse_sweep_option(text: str) -> tuple[str, list[Any]]:
    """``key.path=v1,v2,...`` -> (key path, values), each value read as a YAML scalar."""
    from distill.config.yaml_lines import parse_value

    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise UserError(f"--sweep {shorten(text)}: write it as key.path=value1,value2 (e.g. "
                        f"objectives.1.temperature=1,2,4)")
    values = [parse_value(part, f"--sweep {shorten(text, 60)[1:-1]}") if part.strip() else None
              for part in raw.split(",")]
    return key.strip(), values


def label_of(key: str, keys: list[str]) -> str:
    """A key's short name in variant names: its last part, with more of its path when another
    key of the sweep ends the same way."""
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
        tail = ".".join(parts[-n:])
        if not any(other != key and other.split(".")[-n:] == parts[-n:] for other in keys):
            return tail
    return key


def value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def combinations(sweep: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(variant name, {key: value}) for every combination, the first key varying slowest."""
    keys = list(sweep)
    labels = {key: label_of(key, keys) for key in keys}
    out = []
    for values in itertools.product(*(sweep[key] for key in keys)):
        chosen = dict(zip(keys, values))
        name = "-".join(f"{labels[key]}_{value_text(value)}" for key, value in chosen.items())
        out.append((name, chosen))
    return out
