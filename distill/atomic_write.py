"""Files written to a temporary file beside them, synced and renamed: a kill mid-write never
leaves a broken file under the final name, and two processes writing the same file never mix
their bytes."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Callable


def atomic_write(path: str | Path, write: Callable[[IO], object], mode: str = "wb") -> None:
    """``write(f)`` into a temporary file beside ``path``, then renamed to it; on a failure the
    temporary file is removed and the error raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_save(obj, path: str | Path) -> None:
    import torch  # here, not at the top: the results commands write text only

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), "w")
