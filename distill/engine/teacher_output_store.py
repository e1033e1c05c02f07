"""Tables of a frozen teacher's outputs shared by every run of a grid, in files beside the
teacher's weights: ``<weights folder>/teacher_outputs/<key>/<table>.pt``. The key is a digest of
everything that decides the numbers (the teacher's tensors, section and networks, the training
set, the inputs' seed and batches, precision, memory format, compilation, threads, hardware, torch
and the workbench's commit), so a table is read only by runs that would have computed the very
same one. Each table is written atomically by the one process that holds its lock; the
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


def hardware(device: torch.device) -> dict:
    """What of the machine changes a network's numbers: the CPU's vector instructions, or the GPU
    and cuDNN."""
    if device.type == "cuda":
        return {"gpu": torch.cuda.get_device_name(device), "cudnn": torch.backends.cudnn.version()}
    return {"device": device.type, "cpu": torch.backends.cpu.get_cpu_capability()}


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
        damaged or foreign file is removed, so that the table is computed and written again; a
        file this process may not open is left alone)."""
        path = self.path(name)
        if not path.exists():
            return None
        try:
            table = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except OSError as e:
            self._stop(f"{path} cannot be opened ({e.strerror or type(e).__name__})")
            return None
        except Exception as e:  # noqa: BLE001 - a file torch cannot read as tensors
            table = e
        if isinstance(table, dict) and table and all(isinstance(t, torch.Tensor)
                                                     for t in table.values()):
            return table
        self.say(f"teacher outputs: {path} is not a table of tensors"
                 f"{f' ({type(table).__name__})' if isinstance(table, Exception) else ''}; "
                 f"computing it again")
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        return None

    def room(self) -> int:
        """Bytes the bound leaves for more tables."""
        held = 0
        for p in self.root.rglob("*.pt"):
            try:
                held += p.stat().st_size
            except OSError:  # removed meanwhile
                pass
        return self.limit_bytes - held

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
        try:
            with RunLock(self.root, ".size.lock"):  # one writer between measuring and writing
                if not self.fits(table_bytes(table), name):
                    return False
                self.folder.mkdir(parents=True, exist_ok=True)
                if not (self.folder / "identity.json").exists():
                    atomic_write_text(self.folder / "identity.json",
                                      json.dumps(self.identity, indent=2, sort_keys=True,
                                                 default=str))
                atomic_save({f: t.contiguous() for f, t in table.items()}, self.path(name))
        except OSError as e:
            self._stop(f"{self.folder} cannot be written ({e.strerror or type(e).__name__})")
            return False
        return True

    def fits(self, size: int, name: str) -> bool:
        """Whether a table of ``size`` bytes stays within the bound; if not, say so once and
        write no more."""
        room = self.room()
        if size <= room:
            return True
        self._stop(f"the table of {name} ({size / 2 ** 20:.1f} MB) would take {self.root} past "
                   f"teacher.cache_limit_gb ({self.limit_bytes / 2 ** 30:g} GB; "
                   f"{max(room, 0) / 2 ** 30:.2f} GB left); raise the limit or delete that folder")
        return False

    def _stop(self, why: str) -> None:
        self.full = True
        self.say(f"teacher outputs: {why}; the teacher runs at every step where no table is "
                 f"shared")
