"""One stage: one ``Trainer.fit`` of one configuration and seed in its run folder, with its
epoch-end checkpoint (``checkpoints/last.ckpt``, written atomically, holding the generators'
state), its per-epoch CSV log (kept across a resume) and ``metrics.json``. A stage interrupted at
any moment continues from its checkpoint; the Trainer's own arguments are checked here too."""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import time
import warnings
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
from distill.engine.uninitialised_fill import WithoutUninitialisedFill
from distill.engine.epoch_log import EpochLog
from distill.engine.process_rank import STRATEGIES, is_writer, several
from distill.engine.progress import progress_callbacks
from distill.engine.rng_state import capture_rng
from distill.engine.validation_schedule import ValidationSchedule
from distill.environment import record_start
from distill.errors import ConfigError, UserError, shorten
from distill.registry import evaluators, nearest

RESERVED_TRAINER_KEYS = {"max_epochs", "callbacks", "logger", "default_root_dir", "plugins",
                         "use_distributed_sampler",
                         "enable_progress_bar", "num_sanity_val_steps", "enable_model_summary",
                         "gradient_clip_val", "fast_dev_run", "max_steps", "min_steps",
                         "min_epochs", "max_time", "check_val_every_n_epoch", "val_check_interval"}
INSTEAD = {"gradient_clip_val": "is set by the workbench; use train.gradient_clip",
           "use_distributed_sampler": "is set by the workbench, whose data order shares each "
                                      "epoch between the processes",
           **dict.fromkeys(("check_val_every_n_epoch", "val_check_interval"),
                           "is set by the workbench, which measures the test set once at the end "
                           "of an epoch; use train.validate_every (it always measures the last)")}
# Trainer values Lightning accepts but no run can use: (key, smallest value, what it would do)
AT_LEAST_ONE = {"accumulate_grad_batches": "divide every step by zero",
                "log_every_n_steps": "divide by zero when logging",
                "num_nodes": "run on no machine"}


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")


def check_trainer_keys(trainer: dict) -> None:
    valid = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"} - RESERVED_TRAINER_KEYS
    for key in trainer:
        if key not in valid:
            why = INSTEAD.get(key, "is set by the workbench") if key in RESERVED_TRAINER_KEYS else \
                f"is not a Lightning Trainer argument{nearest(key, valid)}"
            raise ConfigError(f"trainer.{key}", why)
    if trainer:
        check_trainer_values(trainer)


def _trainer_args(trainer: dict) -> dict:
    args = dict(accelerator="auto", devices=1, precision="32-true", deterministic=True,
                log_every_n_steps=10)
    args.update(trainer)
    if several(trainer) and args.get("strategy", "auto") in ("auto", "ddp"):
        # DDP, told that a step may leave parameters unused (a cross encoder's towers under itm,
        # later tasks' prototypes, a score head)
        args["strategy"] = "ddp_find_unused_parameters_true"
    return args


def check_trainer_values(trainer: dict) -> None:
    """Construct a Trainer with the file's ``trainer:`` values (cheap, nothing written), so a value
    Lightning refuses (accelerator, precision, devices, strategy, ...) is refused at validate; the
    key is found by trying each value alone."""
    import tempfile

    def attempt(values: dict) -> Exception | None:
        with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                L.Trainer(**_trainer_args(values), max_epochs=1, logger=False, callbacks=[],
                          enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, default_root_dir=scratch)
            except Exception as e:  # Lightning's MisconfigurationException, ValueError, TypeError
                return e
        return None

    for key, why in AT_LEAST_ONE.items():
        value = trainer.get(key)
        if isinstance(value, bool) or (isinstance(value, (int, float)) and value < 1):
            raise ConfigError(f"trainer.{key}", f"{value} would {why}; give 1 or more")
    _check_cpu_values(trainer)
    strategy = trainer.get("strategy", "auto")
    if strategy not in STRATEGIES:
        raise ConfigError("trainer.strategy", f"{shorten(strategy)}: give one of "
                                              f"{', '.join(STRATEGIES)} (several processes: ddp, "
                                              f"which runs the same command in each)")
    for key in ("limit_train_batches", "limit_val_batches"):  # every epoch trains and measures
        value = trainer.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            raise ConfigError(f"trainer.{key}", f"{value} would leave every epoch without "
                                                f"{'training' if 'train' in key else 'a test'}; "
                                                f"give more than 0 or remove the key")
    error = attempt(trainer)
    if error is None:
        return
    key = next((k for k in trainer if attempt({k: trainer[k]}) is not None), None)
    where = f"trainer.{key}" if key else "trainer"
    shown = f"{shorten(trainer[key])} " if key and isinstance(trainer[key], str) else ""
    raise ConfigError(where, f"{shown}is refused by Lightning: "
                             f"{shorten(str(error).strip() or type(error).__name__, 150)[1:-1]}")


def _check_cpu_values(trainer: dict) -> None:
    """On a machine without a GPU (or with ``accelerator: cpu``): no more processes than cores,
    and no 16-bit precision (CPUs compute bf16)."""
    accelerator = trainer.get("accelerator", "auto")
    if accelerator not in ("cpu", "auto") or (accelerator == "auto"
                                              and torch.cuda.is_available()):
        return
    devices, cores = trainer.get("devices"), os.cpu_count() or 1
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > cores:
        raise ConfigError("trainer.devices", f"{devices} processes on a CPU with {cores} cores; "
                                             f"give at most {cores}")
    if trainer.get("sync_batchnorm") is True and several(trainer):
        raise ConfigError("trainer.sync_batchnorm", "torch synchronises BatchNorm across "
                                                    "processes on GPUs only; remove the key (each "
                                                    "process then uses its own batch statistics)")
    if str(trainer.get("precision", "")).startswith("16"):
        raise ConfigError("trainer.precision", f"{trainer['precision']} needs a GPU; on a CPU "
                                               f"use bf16-mixed or 32-true")


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


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


LOGGER_PACKAGES = {"tensorboard": ("tensorboardX", "tensorboard"), "mlflow": ("mlflow",),
                   "wandb": ("wandb",)}  # what each logger imports (the loggers extra)


def check_loggers(loggers: list[str]) -> None:
    """Every logger the file asks for can be made here (its package is installed)."""
    for i, name in enumerate(loggers):
        packages = LOGGER_PACKAGES.get(name, ())
        if packages and not any(importlib.util.find_spec(p) for p in packages):
            raise ConfigError(f"loggers.{i}", f"{name} needs the {packages[0]} package, which is "
                                              f"not installed: pip install -e '.[loggers]', or "
                                              f"remove it")


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
    trainer_args = {k: v for k, v in _trainer_args(exp.trainer).items()
                    if k not in ("accumulate_grad_batches", "gradient_clip_algorithm")}
    if plan.fast:
        trainer_args.update(limit_train_batches=3, limit_val_batches=2)
    return L.Trainer(
        max_epochs=1 if plan.fast else exp.train.epochs,
        default_root_dir=str(run_dir),
        logger=[EpochLog(run_dir, through_epoch=checkpoint_epoch(last_checkpoint(run_dir))),
                *other_loggers(exp, run_dir, label)],
        # at the end of a training epoch, whether or not it measured the test set
        callbacks=[EpochCheckpoint(last_checkpoint(run_dir), exp.checkpoint_seconds),
                   ValidationSchedule(exp.train.validate_every),
                   WithoutUninitialisedFill(),
                   *progress_callbacks(label, plan.progress_bar)],
        plugins=[SafeCheckpointIO()],
        use_distributed_sampler=False,  # the data module shares each epoch (EpochSampler)
        enable_progress_bar=plan.progress_bar,
        enable_model_summary=False, num_sanity_val_steps=0,
        **trainer_args)


TEACHER_METRICS = "teacher_metrics"  # metrics.json key of a reported teacher's own metrics


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


