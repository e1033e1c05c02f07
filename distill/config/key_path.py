"""Key paths into an experiment file's data (``train.optimizer.lr``, ``objectives.1.temperature``):
names joined by dots, list items by their index. ``--set`` and sweeps write through them."""
from __future__ import annotations

from typing import Any

from distill.errors import UserError, shorten


def parse_key(key: str, label: str) -> tuple:
    """``a.b.1.c`` -> ``("a", "b", 1, "c")``; ``label`` names the option in a message."""
    path = tuple(int(p) if p.isdigit() else p for p in key.split("."))
    if any(p == "" for p in path):
        raise UserError(f"{label} {shorten(key)}: a key path is names joined by dots, e.g. "
                        f"train.optimizer.lr")
    return path


def assign(data: dict, path: tuple, value: Any, label: str) -> None:
    """Set ``path`` in ``data`` to ``value``: missing mappings are created, list items must
    exist; ``label`` (e.g. ``--set train.lr``) starts a message."""
    node = data
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                where = ".".join(map(str, path[:i + 1]))
                raise UserError(f"{label}: {where} is not an item of the list (it has "
                                f"{len(node)}); give an index below {len(node)}")
        elif not isinstance(node, dict):
            raise UserError(f"{label}: {shorten('.'.join(map(str, path[:i])))} is not a mapping "
                            f"or a list")
        if last:
            node[part] = value
        else:
            node = node[part] if isinstance(node, list) else node.setdefault(part, {})
