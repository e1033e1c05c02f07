"""YAML reading with ``safe_load`` semantics plus the line of every key, for errors of the form
``FILE:LINE: key.path: message``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from distill.errors import UserError

Path_ = tuple  # a key path: ("objectives", 1, "weight")


class LinedYAML:
    """A parsed YAML document and the 1-based line of each key path in it."""

    def __init__(self, data: Any, lines: dict[Path_, int], file: str):
        self.data, self.lines, self.file = data, lines, file

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path``, or of its longest prefix that has one."""
        for n in range(len(path), -1, -1):
            if tuple(path[:n]) in self.lines:
                return self.lines[tuple(path[:n])]
        return None


PLAIN_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int], constructor) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if type(node) in PLAIN_TAGS and node.tag != PLAIN_TAGS[type(node)]:
        raise UserError(f"not valid YAML: the tag {node.tag!r} is not allowed in experiment files",
                        line=node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if isinstance(key, list):
                raise UserError("a mapping key cannot be a list", line=key_node.start_mark.line + 1)
            if key in out:
                raise UserError(f"key {key!r} appears twice", line=key_node.start_mark.line + 1)
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, path + (key,), lines, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), lines, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)


def parse_yaml(text: str, file: str = "<text>") -> LinedYAML:
    """Parse one YAML document with the safe loader's tags only (no Python objects)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise UserError("the file is empty; start from experiments/quickstart.yaml", file=file)
        lines: dict[Path_, int] = {}
        data = _construct(node, (), lines, loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise UserError(f"not valid YAML: {e.problem or e}", file=file, line=line) from None
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML: {e}", file=file) from None
    except UserError as e:
        raise e.located(file) from None
    finally:
        loader.dispose()
    return LinedYAML(data, lines, file)


def load_yaml(path: str | Path) -> LinedYAML:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no such experiment file; `ls experiments/` lists the shipped ones",
                        file=str(path))
    return parse_yaml(p.read_text(encoding="utf-8"), str(path))
