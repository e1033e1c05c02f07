"""The manifest of a continual run: which configuration and task split the run folder belongs to,
and every completed task with its row of the accuracy matrix. Written atomically (temporary file,
fsync, rename) after each task, so a kill leaves either the old or the new manifest, never half."""
from __future__ import annotations

import json
from pathlib import Path

from distill.continual.tasks import TaskSequence
from distill.atomic_write import atomic_write_text
from distill.errors import UserError

FILE = "manifest.json"


class Manifest:
    """``completed``: one entry per finished task, in order: ``{"task": t, "rows": {"til": [...],
    "cil": [...]}, "epochs": n, "train_seconds": s}``."""

    def __init__(self, path: Path, config: str, tasks: TaskSequence, completed: list[dict]):
        self.path, self.config, self.tasks, self.completed = path, config, tasks, completed

    @classmethod
    def open(cls, run_dir: Path, config: str, tasks: TaskSequence) -> "Manifest":
        """The run folder's manifest, or a new (unwritten) one. Raises UserError when the folder
        holds a run of another configuration or task split, or an unreadable manifest."""
        path = run_dir / FILE
        if not path.exists():
            return cls(path, config, tasks, [])
        try:
            found = json.loads(path.read_text())
            stored_config, stored_tasks, completed = (found["config"], found["tasks"],
                                                      found["completed"])
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path} cannot be read ({type(e).__name__}); delete {run_dir} to "
                            f"start that run afresh") from None
        if stored_config != config or stored_tasks != [list(group) for group in tasks.classes]:
            raise UserError(f"{run_dir} holds a task sequence of a different configuration or "
                            f"task split; run with another --out, or delete that folder to start "
                            f"it afresh")
        return cls(path, config, tasks, completed)

    def done(self, task: int) -> bool:
        return task < len(self.completed)

    def record(self, entry: dict, write: bool = True) -> None:
        """Add the next completed task and rewrite the manifest (``write``: a process of a run
        in several that does not write keeps it in memory)."""
        if entry["task"] != len(self.completed):
            raise ValueError(f"task {entry['task']} completed out of order")
        self.completed.append(entry)
        if write:
            atomic_write_text(self.path, json.dumps({
                "config": self.config, "tasks": [list(group) for group in self.tasks.classes],
                "completed": self.completed}, indent=1))
