"""Which process of a multi-process run (``trainer: {strategy: ddp, devices: N}``) this is.
Lightning starts the other processes by running the same command again (its subprocess launcher;
under SLURM, ``srun`` starts them all), so every process goes through the same runs in the same
order, each ``fit`` a collective. Only the first process, the writer, takes run folders' locks and
writes files (configuration, environment, metrics, teacher weights, the results store);
checkpoints and logs are Lightning's, written by it alone too."""
from __future__ import annotations

import time
from pathlib import Path


STRATEGIES = ("auto", "ddp", "single_device")  # what a file may give as trainer.strategy


def several(trainer: dict) -> bool:
    """Whether a ``trainer:`` section asks for several processes."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    return (trainer.get("strategy") == "ddp" or nodes not in (1, None)
            or not (devices in (1, "1", None, "auto") or devices == [0]))


def is_writer(trainers: list[dict]) -> bool:
    """Whether this process writes: always, unless the runs ask for several processes
    (``trainers``: their ``trainer:`` sections) and this is not the process of global rank 0
    (from the launcher's environment)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return not any(several(t) for t in trainers) or getattr(rank_zero_only, "rank", 0) == 0


def wait_for(path: Path, timeout: float = 600.0) -> None:
    """A follower waits for a file the writer writes after a collective step (a teacher's
    weights, which the next run loads)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not written by the first process in {timeout:.0f} s")
        time.sleep(0.2)


class Unlocked:
    """The lock of a follower: the writer holds the real one."""

    def try_acquire(self) -> bool:
        return True

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass

    def __enter__(self) -> "Unlocked":
        return self

    def __exit__(self, *exc) -> None:
        pass
