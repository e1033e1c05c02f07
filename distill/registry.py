"""Named registries: every objective, teacher role, network, dataset and optimiser is found by name.

A name is registered once with a decorator, e.g. ``@objectives.register("kd")``. The keyword
arguments of the registered callable (its ``__init__`` for a class) form the schema of that entry:
the experiment file's keys for it are checked against them, with types from the annotations.
"""
from __future__ import annotations

import difflib
import inspect
import math
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, create_model

from distill.errors import ConfigError, shorten


@dataclass(frozen=True)
class Entry:
    name: str
    target: Callable[..., Any]
    description: str
    params: type[BaseModel]


def nearest(word: str, options) -> str:
    """' (did you mean X?)' for the closest option, or '' when nothing is close."""
    word = str(word)
    if len(word) > 200:  # a huge value is nobody's typo; difflib would take long
        return ""
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.5)
    return f" (did you mean {shorten(close[0])}?)" if close else ""


# Parameters that only make sense above zero (a temperature divides, a learning rate of 0 trains
# nothing, a layer of width 0 has no units) or at zero and above, by name, for every registered
# entry (each number of a list too); an entry may declare tighter bounds itself with
# ``Annotated[float, Field(...)]``.
POSITIVE = re.compile(r"^(lr|temperature|k|hidden|width|widen|depth|heads|dim|bottleneck|steps"
                      r"|num_samples)$|(^|_)(temperature|temp|tau)(_(max|min))?$"
                      r"|_(dim|size|mult|ratio|per_image|layers)$|^gamma$")
NON_NEGATIVE = re.compile(r"^(weight_decay|min_lr|milestones|max_shift|noise|scale|padding|"
                          r"brightness|contrast|saturation)$|epochs$")
FRACTION = re.compile(r"^(momentum|label_smoothing|dropout)$")  # 0 to 1


def _numbers(v) -> list:
    items = v if isinstance(v, (list, tuple)) else [v]
    return [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool)]


# Magnitudes no run can mean: a temperature squared under- or overflows, a learning rate of 1e300
TEMPERATURE = re.compile(r"(^|_)(temperature|temp|tau)(_(max|min))?$")
LIMITS = {"lr": (0.0, 100.0)}


def _takes_numbers(annotation: Any) -> bool:
    """Whether ``annotation`` is (or holds) int or float and not bool: true/false is no number."""
    if annotation in (int, float):
        return True
    args = typing.get_args(annotation)
    return bool(args) and bool not in args and any(_takes_numbers(a) for a in args)


def _no_booleans(name: str, annotation: Any) -> Any:
    def refuse(v):
        items = v if isinstance(v, (list, tuple)) else [v]
        if any(isinstance(x, bool) for x in items):
            raise ValueError(f"{name} takes a number, not true/false")
        return v
    return Annotated[annotation, BeforeValidator(refuse)] if _takes_numbers(annotation) \
        else annotation


def _bounded(name: str, annotation: Any) -> Any:
    """``annotation`` with the bound its parameter name implies (see POSITIVE, NON_NEGATIVE,
    TEMPERATURE, LIMITS), and no booleans where it takes numbers."""
    annotation = _no_booleans(name, annotation)
    low, high = (1e-4, 1e4) if TEMPERATURE.search(name) else LIMITS.get(name, (0.0, math.inf))
    if POSITIVE.search(name):
        def check(v):
            for x in _numbers(v):
                if x <= 0:
                    raise ValueError(f"{name} must be greater than 0, got {x}")
                if not low <= x <= high:
                    raise ValueError(f"{name} must be between {low:g} and {high:g}, got {x:g}")
            return v
    elif FRACTION.search(name):
        def check(v):
            for x in _numbers(v):
                if not 0 <= x <= 1:
                    raise ValueError(f"{name} must be between 0 and 1, got {x}")
            return v
    elif NON_NEGATIVE.search(name):
        def check(v):
            for x in _numbers(v):
                if x < 0:
                    raise ValueError(f"{name} must be 0 or more, got {x}")
            return v
    else:
        return annotation
    return Annotated[annotation, AfterValidator(check)]


def _params_model(name: str, target: Callable[..., Any], skip: frozenset[str]) -> type[BaseModel]:
    fn = target.__init__ if inspect.isclass(target) else target
    try:
        signature = inspect.signature(fn, eval_str=True)
    except Exception:  # an annotation that only resolves later: pydantic resolves the string
        signature = inspect.signature(fn)
    fields: dict[str, Any] = {}
    for p in list(signature.parameters.values()):
        if p.name in skip or p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = Any if p.annotation is inspect.Parameter.empty else p.annotation
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (_bounded(p.name, annotation), default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False)
    return create_model(f"{name}_params", __config__=config, **fields)


class Registry:
    """Names of one kind (objective, network, ...) mapped to the callable that builds them.

    ``skip`` lists constructor arguments the engine supplies itself (e.g. ``num_classes``), so they
    are not part of the experiment file's schema.
    """

    def __init__(self, kind: str, skip: tuple[str, ...] = ()):
        self.kind = kind
        self.skip = frozenset(skip)
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str | None = None):
        def decorate(target):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            paragraph = (inspect.getdoc(target) or "").split("\n\n")[0]
            text = description or " ".join(paragraph.split())
            self._entries[name] = Entry(name, target, text, _params_model(name, target, self.skip))
            target.registered_name = name
            return target

        return decorate

    def get(self, name: str, key: str = "name") -> Entry:
        if name not in self._entries:
            raise ConfigError(key, f"unknown {self.kind} {shorten(name)}{nearest(name, self._entries)}; "
                                   f"`distill list` shows the {self.kind}s")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]


objectives = Registry("objective")
teachers = Registry("teacher role", skip=("network",))
networks = Registry("network", skip=("num_classes", "input_shape", "vocab_size", "text_length"))
datasets = Registry("dataset")
optimizers = Registry("optimizer", skip=("params",))
schedules = Registry("schedule", skip=("optimizer", "epochs"))
augmentations = Registry("augmentation")
evaluators = Registry("evaluator")
