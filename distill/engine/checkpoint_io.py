"""Files written to a temporary file and renamed (a kill mid-write never leaves a broken file
under the final name, and two processes writing the same file never mix their bytes); checkpoints
read with ``torch.load(..., weights_only=True)``."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from distill.errors import UserError


def atomic_save(obj, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class SafeCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120]}); delete it to start that run afresh")\
                from None
