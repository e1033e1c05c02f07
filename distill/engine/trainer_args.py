"""The Trainer's arguments from the file's ``trainer:`` and ``loggers:`` sections: the
workbench's defaults, the keys it sets itself, and the checks ``validate`` makes, which import
Lightning only for a file that sets Trainer keys."""
from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import warnings

import torch

from distill.engine.process_rank import STRATEGIES, several
from distill.errors import ConfigError, shorten
from distill.registry import nearest

RESERVED_TRAINER_KEYS = {"max_epochs", "callbacks", "logger", "default_root_dir", "plugins",
                         "use_distributed_sampler",
                         "enable_progress_bar", "num_sanity_val_steps", "enable_model_summary",
                         "gradient_clip_val", "fast_dev_run", "max_steps", "min_steps",
                         "min_epochs", "max_time", "check_val_every_n_epoch", "val_check_interval"}
INSTEAD = {"max_epochs": "is set by the workbench; use train.epochs",
           "min_epochs": "is set by the workbench, which trains train.epochs; use train.epochs",
           "logger": "is set by the workbench, which always writes logs/metrics.csv; add others "
                     "with `loggers: [tensorboard, mlflow, wandb]`",
           "default_root_dir": "is set by the workbench; give the output folder with --out",
           "fast_dev_run": "is set by the workbench; use `distill run FILE --fast`",
           **dict.fromkeys(("callbacks", "plugins"),
                           "is set by the workbench: an experiment file never brings code; "
                           "write an objective instead (README: Adding an objective)"),
           "gradient_clip_val": "is set by the workbench; use train.gradient_clip",
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
    """Lightning's log lines and warnings that say nothing to a workbench user, silenced. Its
    import sets its loggers' level: called before it, only the warning filters hold."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")


def check_trainer_keys(trainer: dict) -> None:
    """Every key of the file's ``trainer:`` a Lightning Trainer argument the workbench leaves to
    it, every value one Lightning accepts (Lightning is imported only when there are keys)."""
    if not trainer:
        return
    import lightning as L

    quiet_lightning()
    valid = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"} - RESERVED_TRAINER_KEYS
    for key in trainer:
        if key not in valid:
            why = INSTEAD.get(key, "is set by the workbench") if key in RESERVED_TRAINER_KEYS else \
                f"is not a Lightning Trainer argument{nearest(key, valid)}"
            raise ConfigError(f"trainer.{key}", why)
    check_trainer_values(trainer)


def trainer_args(trainer: dict) -> dict:
    """The Trainer's arguments: the workbench's defaults under the file's ``trainer:``."""
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

    import lightning as L

    def attempt(values: dict) -> Exception | None:
        with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                L.Trainer(**trainer_args(values), max_epochs=1, logger=False, callbacks=[],
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
