"""Reading an experiment file: YAML with lines, ``--set`` overrides, the schema, registry names, and
variants (each variant is the base file deep-merged with its overrides; lists are replaced; a
sweep adds one variant per combination of its values, :mod:`distill.config.sweep`)."""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from distill.config.schema import Experiment, check_named_parts, describe
from distill.config.key_path import assign, parse_key
from distill.config.sweep import combinations, parse_sweep_option
from distill.config.yaml_lines import LinedYAML, load_yaml, parse_value
from distill.errors import UserError, shorten
from distill.registry import nearest

DEFAULT_VARIANT = "default"


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else copy.deepcopy(v)
    return out


def apply_set(data: dict, assignment: str) -> tuple:
    """Apply one ``key.path=value`` (value parsed as YAML) to ``data``; returns the key path."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set {shorten(assignment)}: write it as key.path=value")
    path = parse_key(key, "--set")
    assign(data, path, _set_value(raw, assignment), f"--set {shorten(key)}")
    return path


def _set_value(raw: str, assignment: str):
    """A ``--set`` value read as YAML with the file's bounds; text that is not YAML stays text."""
    if not raw.strip():
        return None
    try:
        return parse_value(raw, set_label(assignment))
    except UserError as e:
        if e.message.startswith("not valid YAML:") and "nested" not in e.message:
            return raw
        raise UserError(e.message, file=e.file) from None


def set_label(assignment: str) -> str:
    """``--set key=value`` as the "file" of a message, shortened when long."""
    return "--set " + shorten(assignment, 80)[1:-1]


RESERVED_VARIANTS = ("teacher", "experiment.yaml", "source.json")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
MAX_NAME = 100


def name_problem(name, what: str) -> str | None:
    """Why ``name`` cannot name a folder (experiment or variant), or None when it can."""
    if not isinstance(name, str):
        return f"a {what} name is text, not {type(name).__name__}"
    if not SAFE_NAME.fullmatch(name):
        return (f"{shorten(name)} cannot be a {what} name: it becomes a folder, so use letters, "
                f"digits and _ . + - (starting with a letter or digit)")
    if len(name) > MAX_NAME:
        return f"{shorten(name)} is too long for a {what} name (at most {MAX_NAME} characters)"
    folded = name.casefold().rstrip(".")  # Teacher, teacher. are teacher on some file systems
    if what == "variant" and (folded in RESERVED_VARIANTS or folded.startswith("teacher-")):
        return (f"{shorten(name)} cannot be a variant name: the teacher stage and the experiment "
                f"folder use it (teacher, teacher-*, experiment.yaml, source.json); rename it")
    if what == "experiment" and name.startswith("results.sqlite"):
        return f"{shorten(name)} cannot be an experiment name: the results store uses it"
    return None


INT_LIMIT = 2 ** 63 - 1  # torch's and numpy's integers


def _non_finite(value, path: tuple = ()):
    """The key path of the first NaN, infinite or beyond-int64 number in ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
        return path
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = _non_finite(v, path + (k,))
        if found is not None:
            return found
    return None


@dataclass
class ExperimentFile:
    """A validated experiment file: the base experiment and each variant's resolved experiment."""

    path: str
    base: Experiment
    variants: dict[str, Experiment]
    raw: dict
    locator: "_Locator"
    sets: list[str]
    sweeps: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> str:
        return self.base.baseline or next(iter(self.variants))

    def locate(self, error: UserError, variant: str) -> UserError:
        """Give an error raised while building ``variant`` its file and line."""
        if error.file or not error.key:
            return error.located(self.path)
        path = tuple(int(p) if p.isdigit() else p for p in error.key.split("."))
        return self.locator.error(path, error.message,
                                  None if variant == DEFAULT_VARIANT else variant)


class _Locator:
    """Turns a key path of a (variant's) resolved config into ``FILE:LINE: key.path``."""

    def __init__(self, doc: LinedYAML, sets: dict[tuple, str]):
        self.doc, self.sets = doc, sets

    def error(self, path: tuple, message: str, variant: str | None = None) -> UserError:
        if variant is not None:
            own = ("variants", variant) + tuple(path)
            for n in range(len(own), 2, -1):
                if own[:n] in self.doc.lines:
                    return UserError(message, self.doc.file, self.doc.lines[own[:n]],
                                     _dotted(own))
        for n in range(len(path), 0, -1):
            if tuple(path[:n]) in self.sets:
                return UserError(message, set_label(self.sets[tuple(path[:n])]), None,
                                 _dotted(path))
        return UserError(message, self.doc.file, self.doc.line_of(tuple(path)), _dotted(path))


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _validate(data: dict, loc: _Locator, variant: str | None) -> Experiment:
    try:
        exp = Experiment.model_validate(data)
    except ValidationError as e:
        errs = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")
        first = errs[0]  # an unknown key first: it often explains a "missing" one
        model = _model_at(first["loc"])
        msg = describe(first, model)
        if len(errs) > 1:
            msg += f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})"
        raise loc.error(_clean_loc(first["loc"]), msg, variant) from None
    problems = check_named_parts(exp)
    if problems:
        path, msg = problems[0]
        raise loc.error(path, msg, variant)
    return exp


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's union/tag markers so the path matches the file's keys."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def _model_at(loc: tuple):
    """The pydantic model whose key ``loc[-1]`` is, for suggesting the nearest valid key."""
    model = Experiment
    for part in _clean_loc(loc)[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return model
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and hasattr(c, "model_fields")]
        for c in candidates:
            nested += [a for a in getattr(c, "__args__", ()) if isinstance(a, type)
                       and hasattr(a, "model_fields")]
        if not nested:
            return model
        model = nested[0]
    return model


def load_experiment(path: str, sets: list[str] = (), only: list[str] | None = None,
                    sweeps: list[str] = ()) -> ExperimentFile:
    """Read and validate ``path`` (every variant, or those in ``only``), with ``--set`` and
    ``--sweep`` options applied; raise UserError with ``FILE:LINE: key.path: message`` for the
    first problem found."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise UserError("an experiment file is a mapping of keys (name, data, student, ...)",
                        doc.file, 1)
    data = copy.deepcopy(doc.data)
    set_paths = {apply_set(data, s): s for s in sets}
    for option in sweeps:
        key, values = parse_sweep_option(option)
        if not isinstance(data.get("sweep"), dict):
            data["sweep"] = {}
        data["sweep"][key] = values
        set_paths[("sweep", key)] = f"--sweep {option}"
    loc = _Locator(doc, set_paths)
    bad = _non_finite(data)
    if bad is not None:
        value = data
        for part in bad:
            value = value[part]
        raise loc.error(bad, "NaN and infinite numbers are not accepted; give a finite number"
                        if isinstance(value, float) else
                        f"{shorten(str(value), 30)[1:-1]} is out of any range here (beyond 2**63)")
    base = _validate(data, loc, None)
    problem = name_problem(base.name, "experiment")
    if problem:
        raise loc.error(("name",), problem)
    for name in base.variants:
        problem = name_problem(name, "variant")
        if problem:
            raise loc.error(("variants", name), problem)
    plain = {k: v for k, v in data.items() if k not in ("variants", "sweep")}
    combos = combinations(base.sweep) if base.sweep else []
    swept = dict(combos)
    for name in swept:
        problem = name_problem(name, "variant") or (
            f"{name} is also a variant of the file; rename that variant"
            if name in base.variants else None)
        if problem:
            raise loc.error(sweep_key(swept[name], loc), f"a variant of the sweep: {problem}")
    if len(swept) < len(combos):
        twice = next(n for i, (n, _) in enumerate(combos) if n in dict(combos[:i]))
        raise loc.error(sweep_key(swept[twice], loc), f"two values of the sweep make the same "
                                                      f"variant {twice}; give values that differ "
                                                      f"in writing too")
    names = list(base.variants) + list(swept) or [DEFAULT_VARIANT]
    for name in only or []:
        if name not in names:
            raise UserError(f"--variant {shorten(name)}: no such variant{nearest(name, names)}; "
                            f"the file has {', '.join(names)}", doc.file)
    if base.baseline and base.baseline not in names:
        raise loc.error(("baseline",), f"no variant named {shorten(base.baseline)}"
                        f"{nearest(base.baseline, names)}")
    variants = {}
    for name in names:
        if only and name not in only:
            continue
        if name in swept:
            variants[name] = swept_variant(plain, swept[name], name, loc)
            continue
        override = base.variants.get(name, {})
        if not isinstance(override, dict):
            raise loc.error(("variants", name), "a variant is a mapping of keys to override")
        for key in ("variants", "sweep"):
            if key in override:
                raise loc.error(("variants", name, key), f"a variant cannot hold `{key}:`; give "
                                                         f"it at the top of the file")
        variants[name] = base if name == DEFAULT_VARIANT else \
            _validate(deep_merge(plain, override), loc, name)
    return ExperimentFile(path, base, variants, data, loc, list(sets), list(sweeps))


def swept_variant(plain: dict, chosen: dict, name: str, loc: "_Locator") -> Experiment:
    """The base configuration with the sweep's values of one combination, validated; an error
    names the combination."""
    data = copy.deepcopy(plain)
    try:
        for key, value in chosen.items():
            assign(data, parse_key(key, "sweep key"), value, f"sweep key {shorten(key)}")
        return _validate(data, loc, None)
    except UserError as e:
        raise loc.error(sweep_key(chosen, loc), f"variant {name}: {e.key + ': ' if e.key else ''}"
                                                f"{e.message}") from None


def sweep_key(chosen: dict, loc: "_Locator") -> tuple:
    """Where a sweep's error is shown: a ``--sweep`` option of the combination when there is
    one, else the file's ``sweep:``."""
    return next((("sweep", key) for key in chosen if ("sweep", key) in loc.sets), ("sweep",))
