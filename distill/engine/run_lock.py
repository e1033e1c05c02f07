"""One process at a time in a run folder: two ``distill run`` of the same file into the same
``--out`` share the work instead of writing the same files at once."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


class RunLock:
    """An exclusive ``flock`` on ``<folder>/<name>`` (``.lock``). The operating system releases
    it when the holder ends, however it ends (SIGKILL included), so a stale lock never blocks a
    later run. Locks of one machine; on a shared network filesystem ``flock`` may not be seen across
    machines."""

    def __init__(self, folder: Path, name: str = ".lock"):
        self.folder = Path(folder)
        self.name = name
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; False when another process holds it."""
        return self._take(fcntl.LOCK_EX | fcntl.LOCK_NB)

    def acquire(self) -> None:
        """Take the lock, waiting for its holder to finish."""
        self._take(fcntl.LOCK_EX)

    def _take(self, mode: int) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / self.name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        if self._fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
