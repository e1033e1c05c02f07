"""Running one task sequence (one variant x seed) in ``<run_dir>``:

- ``task<t>/``: one ``Trainer.fit`` per task, its Lightning logs and its epoch-end checkpoint
  ``task<t>/checkpoints/last.ckpt`` (written atomically);
- ``manifest.json``: the completed tasks and their rows of the accuracy matrix (atomic);
- ``metrics.json`` (marks the finished run): the matrices, the metrics and their definitions;
- ``accuracy_matrix.png``: the heatmap (with matplotlib).

Task t starts from the state at the end of task t-1 (read from its checkpoint, in an uninterrupted
run as in a resumed one), takes the snapshots (teacher role ``snapshot``) and trains with generators
seeded from (seed, t). A re-run skips the tasks in the manifest and continues an interrupted task
from its checkpoint, which holds the generators' state: the final matrix equals that of a run that
was never interrupted.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from distill.atomic_write import atomic_write_text
from distill.config.schema import Experiment
from distill.continual.accuracy_matrix import MATRIX_NOTE, AccuracyMatrix, metric_notes
from distill.continual.evaluate import evaluate_seen, evaluations, task_test_counts
from distill.continual.heatmap import matplotlib_missing, save_heatmap
from distill.continual.manifest import Manifest
from distill.continual.task_data import task_data
from distill.continual.tasks import TaskSequence, task_sequence
from distill.data.base import DataModule
from distill.engine.acceleration import accelerate
from distill.engine.build import build_data, build_module, build_teacher, seeded
from distill.engine.checkpoint_io import SafeCheckpointIO
from distill.engine.module import DistillationModule
from distill.engine.process_rank import is_writer
from distill.engine.process_settings import keeps_process_settings
from distill.engine.rng_state import capture_rng
from distill.engine.stage import (RunPlan, check_run_folder, last_checkpoint,
                                   resolved_config, stage_trainer)
from distill.engine.teacher_in_checkpoints import put_back
from distill.environment import record_start
from distill.errors import UserError
from distill.fingerprint import fingerprint

HEATMAP = "accuracy_matrix.png"


def task_seed(seed: int, task: int) -> int:
    """The seed every generator gets when task ``task`` of the run with ``seed`` starts."""
    return int(np.random.SeedSequence([seed, task]).generate_state(1)[0])


def task_dir(run_dir: Path, task: int) -> Path:
    return run_dir / f"task{task}"


def read_checkpoint(path: Path) -> dict:
    """A task's checkpoint; UserError when it is missing or cannot be read."""
    if not path.exists():
        raise UserError(f"{path} is missing, but the manifest lists that task as completed; delete "
                        f"{path.parent.parent.parent} to start that run afresh")
    return SafeCheckpointIO().load_checkpoint(path)


def task_experiment(exp: Experiment, task: int) -> Experiment:
    """``exp`` as task ``task`` trains: the first task takes ``continual.first_task_extra_epochs``
    epochs more than ``train.epochs`` (its schedule spans them all)."""
    extra = exp.continual.first_task_extra_epochs if task == 0 else 0
    if not extra:
        return exp
    train = exp.train.model_copy(update={"epochs": exp.train.epochs + extra})
    return exp.model_copy(update={"train": train})


def train_task(exp: Experiment, base: DataModule, tasks: TaskSequence, task: int, seed: int,
               run_dir: Path, label: str, plan: RunPlan,
               teacher_weights: list[str | None] | None = None, say=print) -> DistillationModule:
    """Task ``task`` from the end of the previous one (or from its own checkpoint);
    ``teacher_weights``: the teacher stage's weights file (a list of one), for a frozen teacher.
    The run's environment is recorded when its first task starts (and checked at each)."""
    exp = task_experiment(exp, task)
    seeded(task_seed(seed, task))
    data = task_data(base, tasks, task, task_seed(seed, task))
    module = build_module(exp, data, build_teacher(exp, data, teacher_weights), task=task,
                          teacher_weights=teacher_weights, tasks=tasks)
    if task > 0:
        previous_file = last_checkpoint(task_dir(run_dir, task - 1))
        previous = read_checkpoint(previous_file)
        put_back(previous, module.teacher, module.teacher_digest, previous_file)  # left out
        module.load_state_dict(previous["state_dict"])
    if module.teacher is not None:
        module.teacher.on_task_start(task)
    accelerate(module, data, exp.channels_last, exp.compile)
    last = last_checkpoint(task_dir(run_dir, task))
    trainer = stage_trainer(exp, task_dir(run_dir, task), f"{label} t{task}", plan)
    if is_writer([exp.trainer]):
        record_start(run_dir, (run_dir / "config.yaml").read_text(), say, label,
                     resuming=task > 0 or last.exists())
    module.rng_at_fit = capture_rng()
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.exists() else None)
    return module


def matrices(manifest: Manifest, upto: int) -> dict[str, AccuracyMatrix]:
    """The accuracy matrices of tasks 0..upto from the manifest, one per evaluation."""
    entries = manifest.completed[:upto + 1]
    counts = entries[-1].get("test_counts")  # absent in manifests written before it was added
    return {kind: AccuracyMatrix.of((entry["rows"][kind] for entry in entries), counts)
            for kind in entries[0]["rows"]}


def task_metrics(manifest: Manifest, upto: int) -> dict[str, float]:
    """Every metric of the sequence as it stood after task ``upto``."""
    return {name: value for kind, matrix in matrices(manifest, upto).items()
            for name, value in matrix.metrics(kind).items()}


@keeps_process_settings
def run_sequence(exp: Experiment, variant: str, seed: int, run_dir: Path, plan: RunPlan,
                 record: Callable[[dict[str, float], int], None], say=print,
                 teacher_weights: list[str | None] | None = None) -> dict[str, float]:
    """Train, evaluate and record every task of one variant x seed; returns the final metrics.
    ``record(metrics, task)`` receives the metrics as they stand after each task (the results
    store's writer)."""
    torch.set_num_threads(exp.threads)
    label = f"{variant} s{seed}"
    base = build_data(exp, seed)
    tasks = task_sequence(exp, base.num_classes, seed)
    check_run_folder(exp, seed, run_dir)
    manifest = Manifest.open(run_dir, fingerprint(resolved_config(exp, seed)), tasks)
    if (run_dir / "metrics.json").exists():
        say(f"{label}: finished earlier, skipped ({run_dir / 'metrics.json'})")
        for task in range(len(manifest.completed)):
            record(task_metrics(manifest, task), task)
        return finished_metrics(run_dir)
    resume_at = len(manifest.completed)
    if resume_at < len(tasks):  # refuse unreadable checkpoints before anything is written
        if resume_at > 0:
            read_checkpoint(last_checkpoint(task_dir(run_dir, resume_at - 1)))
        if last_checkpoint(task_dir(run_dir, resume_at)).exists():
            read_checkpoint(last_checkpoint(task_dir(run_dir, resume_at)))
    writer = is_writer([exp.trainer])  # several processes: the first writes the files
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "config.yaml"
    if writer and not config_file.exists():
        config_file.write_text(resolved_config(exp, seed))
    kinds = evaluations(exp.continual.setting)
    for task in range(len(tasks)):
        if manifest.done(task):
            say(f"{label} task {task}: finished earlier, not retrained")
        else:
            say(f"{label} task {task}: classes {list(tasks.classes[task])} -> "
                f"{task_dir(run_dir, task)}")
            started = time.perf_counter()
            module = train_task(exp, base, tasks, task, seed, run_dir, label, plan,
                                teacher_weights, say)
            rows = evaluate_seen(module, base, tasks, task, kinds, task_seed(seed, task))
            manifest.record({"task": task, "classes": list(tasks.classes[task]), "rows": rows,
                             "test_counts": task_test_counts(base, tasks, task),
                             "epochs": module.trainer.current_epoch, "history": module.history,
                             "train_seconds": round(time.perf_counter() - started, 2)},
                            write=writer)
            say(f"{label} task {task}: accuracy on tasks 0..{task} " + "; ".join(
                f"{kind} {' '.join(f'{v:.1f}' for v in row)}" for kind, row in rows.items()))
        record(task_metrics(manifest, task), task)
    if not writer:
        return task_metrics(manifest, len(tasks) - 1)
    return finish(exp, variant, seed, run_dir, manifest, say)


def finish(exp: Experiment, variant: str, seed: int, run_dir: Path, manifest: Manifest,
           say) -> dict[str, float]:
    """The heatmap and metrics.json (written last: it marks the run finished)."""
    last = len(manifest.completed) - 1
    final = matrices(manifest, last)
    missing = matplotlib_missing()
    if missing:
        say(f"{variant} seed {seed}: {missing}")
    else:
        save_heatmap(final, run_dir / HEATMAP, f"{exp.name}: {variant}, seed {seed}")
    metrics = task_metrics(manifest, last)
    notes = metric_notes()
    atomic_write_text(run_dir / "metrics.json", json.dumps({
        **metrics, "definitions": {name: notes[name] for name in metrics},
        "tasks": [entry["classes"] for entry in manifest.completed],
        "R": {kind: [list(row) for row in matrix.rows] for kind, matrix in final.items()},
        "R_definition": MATRIX_NOTE,
        "epochs": sum(entry["epochs"] for entry in manifest.completed),
        "train_seconds": round(sum(entry["train_seconds"] for entry in manifest.completed), 2)},
        indent=2))
    return metrics


def finished_metrics(run_dir: Path) -> dict[str, float]:
    """The final metrics of a finished sequence (its metrics.json)."""
    found = json.loads((run_dir / "metrics.json").read_text())
    return {name: found[name] for name in found["definitions"]}
