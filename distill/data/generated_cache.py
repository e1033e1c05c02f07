"""Generated datasets kept on disk. A set made by a deterministic generator (mnist1d: seconds of
interpolation at every start of a process) is made once per machine for its arguments and read
back afterwards. The key holds every argument of the generator and the versions of the packages
that make it, so a stored set is the one the generator would make now; a file that cannot be
read is made again, and a disk that cannot be written to only loses the saving.

The folder is ``$DISTILL_CACHE``, else ``$XDG_CACHE_HOME/distill``, else ``~/.cache/distill``;
deleting it is always safe. Files are NumPy archives read without pickle."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from distill.atomic_write import atomic_write
from distill.fingerprint import fingerprint


def cache_root() -> Path:
    """The folder of kept datasets (the module's docstring says which)."""
    if os.environ.get("DISTILL_CACHE"):
        return Path(os.environ["DISTILL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distill"


def generated_arrays(name: str, key: dict, fields: tuple[str, ...],
                     make: Callable[[], dict]) -> dict[str, np.ndarray]:
    """The arrays ``fields`` of ``make()``, read from the cache when it holds them for ``key``
    (JSON-able: the generator's arguments and versions), else made and stored."""
    try:
        path = cache_root() / "generated" / f"{name}-{fingerprint(key)}.npz"
        with np.load(path, allow_pickle=False) as stored:
            if set(fields) <= set(stored.files):
                return {field: stored[field] for field in fields}
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile):
        pass  # not there yet, or unreadable (a .npy file loads as an array: TypeError)
    except RuntimeError:  # no home folder to keep it in
        path = None
    made = make()
    arrays = {field: np.asarray(made[field]) for field in fields}
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: np.savez(f, **arrays))
        except OSError:
            pass  # a read-only or full disk: the set is used without keeping it
    return arrays
