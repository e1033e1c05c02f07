"""A frozen teacher's outputs per training sample, computed in one pass instead of once per batch
of every run: for inputs that repeat between epochs (no random augmentation) one table for the
whole run, computed in the set's order; for augmented inputs one table per epoch, computed over
that epoch's training batches exactly as training forms them (the same samples, augmentation
draws and batch composition), so every value equals the one the teacher would give at the step.
With a :class:`~distill.engine.teacher_output_store.TeacherOutputStore` the tables are shared
with every other run of the grid that would compute the same ones."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch

from distill.contracts import ModelOutput
from distill.engine.teacher_output_store import TeacherOutputStore


@dataclass
class CachePlan:
    """What the file says of the cache (``teacher.cache``, ``teacher.cache_limit_gb``), where
    its tables are shared (``root``: None for a teacher without weights files) and what of the
    experiment decides them (``identity``: the training set, the teacher's section and networks,
    ``channels_last`` and ``compile``; the run adds the rest, see ``_shared_store``)."""

    enabled: bool = True
    root: Path | None = None
    limit_bytes: int = 8 * 2 ** 30
    identity: dict = field(default_factory=dict)


class TeacherCache:
    """The ``fields`` of the teacher's output for the samples of a training set whose positions
    in the underlying set are ``indices`` (None: all ``size`` of them)."""

    def __init__(self, fields: frozenset[str], size: int, indices: torch.Tensor | None,
                 store: TeacherOutputStore | None = None):
        self.fields = fields
        self.store = store
        self.rows = len(indices) if indices is not None else size
        self.position = None  # underlying index -> row, for a subset
        if indices is not None:
            self.position = torch.full((size,), -1, dtype=torch.long)
            self.position[indices] = torch.arange(len(indices))
        self.table: dict[str, torch.Tensor] | None = None
        self.counts = {"read": 0, "computed": 0, "live": 0}  # tables, by how they were had

    def load(self, name: str, batches: Callable[[], Iterable], teacher, always: bool) -> None:
        """Make ``table`` the table ``name``: read from the store, else computed from
        ``batches()`` (pairs x, index) and written to it. When it cannot be shared (no store,
        another process writing it, the store full) it is computed for this run alone if
        ``always`` (inputs that repeat: one pass pays for itself), else ``table`` is None and the
        teacher runs at every step."""
        self.table = None
        if self.store is not None and self._read(name):
            return
        lock = self.store.lock(name) if self.store is not None and not self.store.full else None
        if lock is None and not always:
            self.counts["live"] += 1
            return
        try:
            if lock is not None and self._read(name):  # written while this one took the lock
                return
            # a table only worth sharing is not held in memory past the bound
            fits = None if always else (lambda size: self.store.fits(size, name))
            self.table = self.compute(teacher, batches(), fits)
            if self.table is None:
                self.counts["live"] += 1
                return
            self.counts["computed"] += 1
            if lock is not None:
                self.store.write(name, self.table)
        finally:
            if lock is not None:
                lock.release()

    def _read(self, name: str) -> bool:
        self.table = self.store.read(name)
        if self.table is not None:
            self.counts["read"] += 1
        return self.table is not None

    @torch.no_grad()
    def compute(self, teacher, batches: Iterable,
                fits: Callable[[int], bool] | None = None) -> dict[str, torch.Tensor] | None:
        """The table from one pass of ``teacher`` over ``batches``; None as soon as its size is
        known when ``fits`` refuses it."""
        table: dict[str, torch.Tensor] = {}
        for x, index in batches:
            out = teacher(x)
            rows = self.row(index)
            if not table:
                shapes = {f: (self.rows, *out.get(f).shape[1:]) for f in self.fields}
                size = sum(math.prod(shape) * out.get(f).element_size()
                           for f, shape in shapes.items())
                if fits is not None and not fits(size):
                    return None
                table = {f: torch.zeros(shapes[f], dtype=out.get(f).dtype) for f in self.fields}
            for f in self.fields:
                table[f][rows] = out.get(f).cpu()
        return table

    def row(self, index: torch.Tensor) -> torch.Tensor:
        index = index.cpu()
        return index if self.position is None else self.position[index]

    def __call__(self, index: torch.Tensor) -> ModelOutput:
        rows = self.row(index)
        return ModelOutput.of({f: self.table[f][rows].to(index.device) for f in self.fields})
