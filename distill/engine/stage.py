"""One stage: one ``Trainer.fit`` of one configuration and seed in its run folder, with its
epoch-end checkpoint (``checkpoints/last.ckpt``, written atomically, holding the generators'
state), its per-epoch CSV log (kept across a resume) and ``metrics.json``. A stage interrupted at
any moment continues from its checkpoint. The Trainer's arguments and their checks are
:mod:`distill.engine.trainer_args`'s."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import yaml

from distill.atomic_write import atomic_write_text
from distill.config.schema import Experiment
from distill.engine.build import build_data, build_module, build_teacher, seeded
from distill.engine.module import DistillationModule
from distill.engine.acceleration import accelerate
from distill.engine.allocator import keep_freed_memory
from distill.engine.checkpoint_io import SafeCheckpointIO
from distill.engine.epoch_checkpoint import EpochCheckpoint
from distill.engine.epoch_log import EpochLog
from distill.engine.process_rank import is_writer
from distill.engine.process_settings import keeps_process_settings
from distill.engine.progress import progress_callbacks
from distill.engine.rng_state import capture_rng
from distill.engine.trainer_args import trainer_args
from distill.engine.validation_schedule import ValidationSchedule
from distill.environment import record_start
from distill.errors import UserError
from distill.registry import evaluators


@dataclass
class RunPlan:
    """How stages run: ``fast`` (one epoch of a few batches) and how progress is shown."""

    fast: bool = False
    interactive: bool | None = None  # None: rich progress bar when stdout is a terminal

    @property
    def progress_bar(self) -> bool:
        return sys.stdout.isatty() if self.interactive is None else self.interactive


def resolved_config(exp: Experiment, seed: int) -> str:
    return yaml.safe_dump({**exp.model_dump(mode="json", by_alias=True,
                                             exclude={"variants", "sweep", "loggers",
                                                      "checkpoint_seconds"}),
                           "seed": seed}, sort_keys=False)


def check_run_folder(exp: Experiment, seed: int, run_dir: Path) -> None:
    """Refuse to continue or reuse a run folder made with another configuration."""
    config_file = run_dir / "config.yaml"
    if config_file.exists() and config_file.read_bytes() != resolved_config(exp, seed).encode():
        raise UserError(f"{run_dir} holds a run of a different configuration; run with another "
                        f"--out, or delete that folder to start it afresh")


def last_checkpoint(run_dir: Path) -> Path:
    """Where a stage in ``run_dir`` keeps its checkpoint, rewritten at the end of every epoch."""
    return run_dir / "checkpoints" / "last.ckpt"


def checkpoint_epoch(path: Path) -> int | None:
    """The last finished epoch held by the checkpoint at ``path`` (None when there is none)."""
    if not path.exists():
        return None
    try:  # memory-mapped: only the epoch is read, not the tensors (the fit loads them later)
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # unreadable: the same one-line refusal as everywhere else
        return int(SafeCheckpointIO().load_checkpoint(path)["epoch"])


def other_loggers(exp: Experiment, run_dir: Path, label: str) -> list:
    """The file's loggers besides the CSV log, writing into the run's folder, offline:
    TensorBoard events in ``tensorboard/`` (a resumed stage adds an event file, the earlier
    ones stay), an MLflow file store in ``mlruns/`` (the server of ``MLFLOW_TRACKING_URI`` when
    that is set), Weights & Biases offline in ``wandb/``."""
    loggers = []
    for name in dict.fromkeys(exp.loggers):
        if name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger
            loggers.append(TensorBoardLogger(str(run_dir), name="tensorboard", version=""))
        elif name == "mlflow":
            from lightning.pytorch.loggers import MLFlowLogger
            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if uri is None:  # MLflow 3 keeps its file store working only when asked
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                uri = (run_dir / "mlruns").resolve().as_uri()
            loggers.append(MLFlowLogger(experiment_name=exp.name, run_name=label,
                                        tracking_uri=uri))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger
            loggers.append(WandbLogger(project=exp.name, name=label, save_dir=str(run_dir),
                                       offline=True))
    return loggers


def stage_trainer(exp: Experiment, run_dir: Path, label: str, plan: RunPlan) -> L.Trainer:
    """The Trainer of one stage: CSV logs and an epoch-end checkpoint (``last_checkpoint``) in
    ``run_dir``, written atomically, so an interrupted stage resumes from its last finished epoch."""
    keep_freed_memory()
    # the module takes its optimiser steps: it clips and accumulates (build_module gives it these)
    args = {k: v for k, v in trainer_args(exp.trainer).items()
            if k not in ("accumulate_grad_batches", "gradient_clip_algorithm")}
    if plan.fast:
        args.update(limit_train_batches=3, limit_val_batches=2)
    return L.Trainer(
        max_epochs=1 if plan.fast else exp.train.epochs,
        default_root_dir=str(run_dir),
        logger=[EpochLog(run_dir, through_epoch=checkpoint_epoch(last_checkpoint(run_dir))),
                *other_loggers(exp, run_dir, label)],
        # at the end of a training epoch, whether or not it measured the test set
        callbacks=[EpochCheckpoint(last_checkpoint(run_dir), exp.checkpoint_seconds),
                   ValidationSchedule(exp.train.validate_every),
                   *progress_callbacks(label, plan.progress_bar)],
        plugins=[SafeCheckpointIO()],
        use_distributed_sampler=False,  # the data module shares each epoch (EpochSampler)
        enable_progress_bar=plan.progress_bar,
        enable_model_summary=False, num_sanity_val_steps=0,
        **args)


TEACHER_METRICS = "teacher_metrics"  # metrics.json key of a reported teacher's own metrics


@keeps_process_settings
def fit(exp: Experiment, seed: int, run_dir: Path, label: str, plan: RunPlan,
        teacher_weights: list[str | None] | None = None,
        say=print) -> tuple[dict, DistillationModule]:
    """Train one stage in ``run_dir`` (``teacher_weights``: one file per teacher network, see
    :func:`build_teacher`); returns its metrics (also written to metrics.json) and the trained
    module. The environment it runs in is recorded (:mod:`distill.environment`)."""
    torch.set_num_threads(exp.threads)
    seeded(seed)
    data = build_data(exp, seed)
    teacher = build_teacher(exp, data, teacher_weights)
    module = build_module(exp, data, teacher, teacher_weights=teacher_weights)
    accelerate(module, data, exp.channels_last, exp.compile)
    check_run_folder(exp, seed, run_dir)
    last = last_checkpoint(run_dir)
    if last.exists():  # an unreadable checkpoint stops the run before anything is written
        SafeCheckpointIO().load_checkpoint(last)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_text = resolved_config(exp, seed)
    writer = is_writer([exp.trainer])
    if writer:
        atomic_write_text(run_dir / "config.yaml", config_text)
    trainer = stage_trainer(exp, run_dir, label, plan)  # threads and determinism set
    if writer:
        record_start(run_dir, config_text, say, label, resuming=last.exists())
    started = time.perf_counter()
    module.rng_at_fit = capture_rng()
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.exists() else None)
    history = module.history
    metrics = module.kind.results(module, data, history)
    if module.teacher_history:  # a reported teacher: its own accuracy, a row of its own
        metrics[TEACHER_METRICS] = {"top1": module.teacher_history[-1],
                                    "top1_best": max(module.teacher_history)}
    for objective in module.objectives:
        metrics.update(objective.summary())
    for spec in exp.evaluate:
        metrics.update(evaluators.get(spec.name).target(**spec.params())(module, data))
    metrics.update(epochs=trainer.current_epoch,
                   train_seconds=round(time.perf_counter() - started, 2))
    if writer:
        atomic_write_text(run_dir / "metrics.json", json.dumps({**metrics, "history": history},
                                                               indent=2))
    return metrics, module


