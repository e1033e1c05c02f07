"""Tables of a frozen teacher's outputs shared by every run of a grid, in files beside the
teacher's weights: ``<weights folder>/teacher_outputs/<key>/<table>.pt``. The key is a digest of
everything that decides the numbers (the teacher's tensors, the training set, the inputs' seed and
batches, precision, threads, torch), so a table is read only by runs that would have computed the
very same one. Each table is written atomically by the one process that holds its lock; the
folder's total size is bounded (``teacher.cache_limit_gb``)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from distill.atomic_write import atomic_save, atomic_write_text
from distill.engine.run_lock import RunLock

FOLDER = "teacher_outputs"


def table_bytes(table: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in table.values())


class TeacherOutputStore:
    """The tables of one key; ``root`` is the ``teacher_outputs`` folder they share with other
    keys (the size bound is the root's)."""

    def __init__(self, root: Path, identity: dict, limit_bytes: int, say=print):
        self.root = Path(root)
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
        self.folder = self.root / key.hexdigest()[:16]
        self.identity = identity
        self.limit_bytes = limit_bytes
        self.say = say
        self.full = False  # the bound was reached: no more tables are written

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.pt"

    def read(self, name: str) -> dict[str, torch.Tensor] | None:
        """The table ``name``, memory-mapped; None when there is none or it cannot be read (a
        foreign or damaged file is set aside, and the table computed again)."""
        path = self.path(name)
        if not path.exists():
            return None
        try:
            table = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            if not (isinstance(table, dict) and table
                    and all(isinstance(t, torch.Tensor) for t in table.values())):
                raise ValueError("not a table of tensors")
            return table
        except Exception as e:  # noqa: BLE001 - any unreadable file is computed again
            self.say(f"teacher outputs: {path} cannot be read ({type(e).__name__}); computing "
                     f"it again")
            path.unlink(missing_ok=True)
            return None

    def lock(self, name: str) -> RunLock | None:
        """The lock of table ``name`` when this process may compute and write it; None when
        another process holds it (that process writes it) or the folder cannot be written."""
        lock = RunLock(self.folder, f".{name}.lock")
        try:
            return lock if lock.try_acquire() else None
        except OSError as e:
            self._stop(f"{self.folder} cannot be written ({e.strerror or type(e).__name__})")
            return None

    def write(self, name: str, table: dict[str, torch.Tensor]) -> bool:
        """Write table ``name`` unless it would take the folder past the bound (then say so once
        and write no more); False when not written."""
        if self.full:
            return False
        size = table_bytes(table)
        held = sum(p.stat().st_size for p in self.root.rglob("*.pt") if p.is_file())
        if held + size > self.limit_bytes:
            self._stop(f"the table of {name} ({size / 2 ** 20:.1f} MB) would take {self.root} "
                       f"past teacher.cache_limit_gb ({self.limit_bytes / 2 ** 30:g} GB; it holds "
                       f"{held / 2 ** 30:.2f} GB); raise the limit or delete that folder")
            return False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not (self.folder / "identity.json").exists():
                atomic_write_text(self.folder / "identity.json",
                                  json.dumps(self.identity, indent=2, sort_keys=True, default=str))
            atomic_save({f: t.contiguous() for f, t in table.items()}, self.path(name))
        except OSError as e:
            self._stop(f"{self.folder} cannot be written ({e.strerror or type(e).__name__})")
            return False
        return True

    def _stop(self, why: str) -> None:
        self.full = True
        self.say(f"teacher outputs: {why}; the teacher runs at every step where no table is "
                 f"shared")
