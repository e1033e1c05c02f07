"""Files written to a temporary file beside them, synced and renamed: a kill mid-write never
leaves a broken file under the final name, and two processes writing the same file never mix
their bytes."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_save(obj, path: str | Path) -> None:
    import torch  # here, not at the top: the results commands write text only

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
