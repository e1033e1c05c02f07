"""YAML reading with ``safe_load`` semantics plus the line of every key, for errors of the form
``FILE:LINE: key.path: message``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from distill.errors import UserError, shorten

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
MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_BYTES = 100_000  # an experiment file is a few kB; anything this large is a mistake
MAX_DEPTH = 100  # nesting of mappings and lists
MAX_VALUES = 20_000  # values after expanding aliases (*name), against "billion laughs" files
BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
        b"\xfe\xff": "UTF-16"}


class _Loader(yaml.SafeLoader):
    """The safe loader with the nesting depth bounded while composing (no RecursionError)."""

    def __init__(self, text: str):
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise UserError(f"not valid YAML here: mappings and lists nested more than "
                                f"{MAX_DEPTH} deep", line=self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    """Python values from the composed nodes, with the line of every key path; counts the values
    it makes, so aliases cannot expand beyond ``MAX_VALUES``."""

    def __init__(self, constructor):
        self.constructor, self.lines, self.count = constructor, {}, 0

    def build(self, node: yaml.Node, path: Path_, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise UserError(f"not valid here: more than {MAX_VALUES} values, with aliases (*name) "
                            f"expanded; an experiment file has a few hundred: use fewer aliases",
                            line=node.start_mark.line + 1)
        if depth > MAX_DEPTH:
            raise UserError(f"not valid here: aliases nest mappings and lists more than "
                            f"{MAX_DEPTH} deep", line=node.start_mark.line + 1)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if type(node) in PLAIN_TAGS and node.tag != PLAIN_TAGS[type(node)]:
            raise UserError(f"not valid YAML: the tag {shorten(node.tag)} is not allowed in "
                            f"experiment files", line=node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        """One scalar; a value its tag cannot read (``!!int abc``, 5000 digits) is a user error,
        and so are bytes (``!!binary``) and dates: no key of an experiment file takes them."""
        if node.tag in ("tag:yaml.org,2002:binary", "tag:yaml.org,2002:timestamp"):
            kind = "bytes (!!binary)" if node.tag.endswith("binary") else "a date"
            raise UserError(f"not valid here: {shorten(node.value)} is read as {kind}; no key of "
                            f"an experiment file takes one (quote it for text)",
                            line=node.start_mark.line + 1)
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            tag = str(node.tag).rsplit(":", 1)[-1]
            raise UserError(f"not valid YAML: {shorten(node.value)} cannot be read as {tag}",
                            line=node.start_mark.line + 1) from None

    def _key(self, key_node: yaml.Node) -> str:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "a mapping" if isinstance(key_node, yaml.MappingNode) else "a list"
            raise UserError(f"a key cannot be {kind}; keys are names", line=line)
        key = self._scalar(key_node)
        if not isinstance(key, str):
            raise UserError(f"the key {shorten(key_node.value)} is read as "
                            f"{type(key).__name__}, not a name; quote it if it is meant as one",
                            line=line)
        return key

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict:
        own: dict[str, Any] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG and isinstance(key_node, yaml.ScalarNode):
                if merges:
                    raise UserError("`<<:` appears twice in one mapping; merge several with "
                                    "`<<: [*a, *b]`", line=key_node.start_mark.line + 1)
                merges.append(value_node)
                continue
            key = self._key(key_node)
            if key in own:
                raise UserError(f"key {shorten(key)} appears twice", line=key_node.start_mark.line + 1)
            self.lines[path + (key,)] = key_node.start_mark.line + 1
            own[key] = self.build(value_node, path + (key,), depth + 1)
        merged: dict[str, Any] = {}
        for value_node in merges:  # `<<: *base` or `<<: [*a, *b]`: earlier ones take precedence
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                self._merge(source, path, depth, own, merged)
        return {**merged, **own} if merged else own

    def _merge(self, source: yaml.Node, path: Path_, depth: int, own: dict, merged: dict) -> None:
        """Add the keys of the merged mapping ``source`` that are not set yet (its own keys first,
        then those it merges itself)."""
        self.count += 1
        if self.count > MAX_VALUES or depth > MAX_DEPTH:
            self.build(source, path, depth + MAX_DEPTH)  # raises the bound's error
        if not isinstance(source, yaml.MappingNode) or source.tag != PLAIN_TAGS[yaml.MappingNode]:
            raise UserError("`<<:` merges a mapping (an alias such as *base) or a list of them",
                            line=source.start_mark.line + 1)
        nested = []
        for key_node, item in source.value:
            if key_node.tag == MERGE_TAG and isinstance(key_node, yaml.ScalarNode):
                nested += item.value if isinstance(item, yaml.SequenceNode) else [item]
                continue
            key = self._key(key_node)
            if key in own or key in merged:
                continue
            self.lines[path + (key,)] = key_node.start_mark.line + 1
            merged[key] = self.build(item, path + (key,), depth + 1)
        for inner in nested:
            self._merge(inner, path, depth + 1, own, merged)


def _read_error(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None) or str(error)
    if "another document" in problem:
        return ("not valid here: a second YAML document (after `---`); an experiment file is one "
                "document")
    return f"not valid YAML: {problem}"


def parse_yaml(text: str, file: str = "<text>") -> LinedYAML:
    """Parse one YAML document with the safe loader's tags only (no Python objects), merge keys
    (``<<``) resolved, nesting and alias expansion bounded."""
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            raise UserError("the file is empty; start from experiments/quickstart.yaml", file=file)
        builder = _Builder(loader)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise UserError(_read_error(e), file=file, line=line) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        char = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
        raise UserError(f"not valid YAML: the control character U+{char:04X} is not allowed in "
                        f"a YAML file", file=file, line=line) from None
    except yaml.YAMLError as e:
        raise UserError(_read_error(e), file=file) from None
    except RecursionError:
        raise UserError(f"not valid YAML: nested more than {MAX_DEPTH} deep", file=file) from None
    except UserError as e:
        raise e.located(file) from None
    finally:
        if loader is not None:
            loader.dispose()
    return LinedYAML(data, builder.lines, file)


def parse_value(text: str, where: str) -> Any:
    """One ``--set`` value, with the same bounds as a file."""
    return parse_yaml(text, where).data


def decode(raw: bytes, file: str) -> str:
    """The text of an experiment file: UTF-8, with or without a byte-order mark; anything else
    (UTF-16, latin-1, binary) is refused with the line of the first bad byte."""
    for bom, name in BOMS.items():
        if raw.startswith(bom):
            raise UserError(f"the file is {name} text; save it as UTF-8", file=file)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise UserError("the file contains NUL bytes (a binary or UTF-16 file?); an experiment "
                        "file is UTF-8 text", file=file, line=raw.count(b"\n", 0, nul) + 1)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8",
                        file=file, line=raw.count(b"\n", 0, e.start) + 1) from None


def read_text(path: str | Path, what: str = "experiment file") -> str:
    """The UTF-8 text of a user's file, every failure a one-line UserError naming it."""
    p, file = Path(path), str(path)
    if p.is_dir():
        raise UserError(f"is a folder, not an {what}", file=file)
    if not p.exists():
        raise UserError(f"no such {what}; `ls experiments/` lists the shipped ones"
                        if what == "experiment file" else f"no such {what}", file=file)
    if not p.is_file():
        raise UserError(f"not a regular file; give an {what}", file=file)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UserError(f"cannot be read ({e.strerror or type(e).__name__})", file=file) from None
    if len(raw) > MAX_BYTES:
        raise UserError(f"the file is larger than {MAX_BYTES // 1000} kB; an {what} is a few "
                        f"kB of YAML", file=file)
    return decode(raw, file)


def load_yaml(path: str | Path) -> LinedYAML:
    return parse_yaml(read_text(path), str(path))
