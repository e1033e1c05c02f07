"""Running an experiment file: the teacher stage (once), then every variant x seed, each in
``<out>/<name>/<variant>/seed<k>/``, each result recorded in ``<out>/results.sqlite``. A run whose
``metrics.json`` exists is skipped; an interrupted one continues from its ``last.ckpt``."""
from __future__ import annotations

import hashlib
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
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from distill.config.load import ExperimentFile
from distill.config.schema import Experiment, ObjectiveSpec, StudentSpec
from distill.engine.build import (build_data, build_module, build_teacher, seeded,
                                  teacher_net_spec)
from distill.engine.module import DistillationModule
from distill.engine.checkpoint_io import SafeCheckpointIO, atomic_save
from distill.engine.progress import progress_callbacks
from distill.errors import ConfigError, UserError, shorten
from distill.registry import evaluators, nearest
from distill.results.store import ResultsStore

RESERVED_TRAINER_KEYS = {"max_epochs", "callbacks", "logger", "default_root_dir", "plugins",
                         "enable_progress_bar", "num_sanity_val_steps", "enable_model_summary",
                         "gradient_clip_val"}


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
            why = ("is set by the workbench; use train.gradient_clip" if key == "gradient_clip_val"
                   else "is set by the workbench") if key in RESERVED_TRAINER_KEYS else \
                f"is not a Lightning Trainer argument{nearest(key, valid)}"
            raise ConfigError(f"trainer.{key}", why)
    if trainer:
        check_trainer_values(trainer)


def _trainer_args(trainer: dict) -> dict:
    args = dict(accelerator="auto", devices=1, precision="32-true", deterministic=True,
                log_every_n_steps=10)
    args.update(trainer)
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

    error = attempt(trainer)
    if error is None:
        return
    key = next((k for k in trainer if attempt({k: trainer[k]}) is not None), None)
    where = f"trainer.{key}" if key else "trainer"
    shown = f"{shorten(trainer[key])} " if key and isinstance(trainer[key], str) else ""
    raise ConfigError(where, f"{shown}is refused by Lightning: "
                             f"{shorten(str(error).strip() or type(error).__name__, 150)[1:-1]}")


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


def teacher_stage(exp: Experiment) -> Experiment:
    """The teacher's own training: its network as a student of the labels (cross-entropy)."""
    spec = exp.teacher
    return exp.model_copy(update={
        "teacher": None, "student": StudentSpec(net=teacher_net_spec(exp)), "train": spec.train,
        "objectives": [ObjectiveSpec(name="ce")], "variants": {}})


def teacher_identity(exp: Experiment) -> dict:
    """What decides the teacher's weights: its network, data and recipe."""
    return {"net": teacher_net_spec(exp).model_dump(), "data": exp.data.model_dump(),
            "train": exp.teacher.train.model_dump(), "seed": exp.teacher.seed}


def needs_teacher_stage(exp: Experiment) -> bool:
    return exp.teacher is not None and exp.teacher.checkpoint is None and exp.teacher.train is not None


def resolved_config(exp: Experiment, seed: int) -> str:
    return yaml.safe_dump({**exp.model_dump(mode="json", by_alias=True, exclude={"variants"}),
                           "seed": seed}, sort_keys=False)


def check_run_folder(exp: Experiment, seed: int, run_dir: Path) -> None:
    """Refuse to continue or reuse a run folder made with another configuration."""
    config_file = run_dir / "config.yaml"
    if config_file.exists() and config_file.read_text() != resolved_config(exp, seed):
        raise UserError(f"{run_dir} holds a run of a different configuration; run with another "
                        f"--out, or delete that folder to start it afresh")


def last_checkpoint(run_dir: Path) -> Path:
    """Where a stage in ``run_dir`` keeps its checkpoint, rewritten at the end of every epoch."""
    return run_dir / "checkpoints" / "last.ckpt"


def stage_trainer(exp: Experiment, run_dir: Path, label: str, plan: RunPlan) -> L.Trainer:
    """The Trainer of one stage: CSV logs and an epoch-end checkpoint (``last_checkpoint``) in
    ``run_dir``, written atomically, so an interrupted stage resumes from its last finished epoch."""
    trainer_args = _trainer_args(exp.trainer)
    if plan.fast:
        trainer_args.update(limit_train_batches=3, limit_val_batches=2)
    return L.Trainer(
        max_epochs=1 if plan.fast else exp.train.epochs,
        default_root_dir=str(run_dir),
        logger=CSVLogger(str(run_dir), name="logs", version=""),
        callbacks=[ModelCheckpoint(dirpath=str(last_checkpoint(run_dir).parent), filename="last",
                                   save_top_k=1, enable_version_counter=False),
                   *progress_callbacks(label, plan.progress_bar)],
        plugins=[SafeCheckpointIO()],
        enable_progress_bar=plan.progress_bar,
        enable_model_summary=False, num_sanity_val_steps=0,
        gradient_clip_val=exp.train.gradient_clip,
        **trainer_args)


def fit(exp: Experiment, seed: int, run_dir: Path, label: str, plan: RunPlan,
        teacher_weights: str | None = None) -> tuple[dict, DistillationModule]:
    """Train one stage in ``run_dir``; returns its metrics (also written to metrics.json) and the
    trained module."""
    torch.set_num_threads(exp.threads)
    seeded(seed)
    data = build_data(exp, seed)
    teacher = build_teacher(exp, data, teacher_weights)
    module = build_module(exp, data, teacher, teacher_weights=teacher_weights)
    check_run_folder(exp, seed, run_dir)
    last = last_checkpoint(run_dir)
    if last.exists():  # an unreadable checkpoint stops the run before anything is written
        SafeCheckpointIO().load_checkpoint(last)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(resolved_config(exp, seed))
    trainer = stage_trainer(exp, run_dir, label, plan)
    started = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.exists() else None)
    history = module.history
    # the student's classifier accuracy means something only if an objective trained it on labels
    trained_on_labels = any(term.objective.uses_labels for term in module.terms)
    metrics = {"top1": history[-1], "top1_best": max(history)} if trained_on_labels else {}
    for spec in exp.evaluate:
        metrics.update(evaluators.get(spec.name).target(**spec.params())(module, data))
    metrics.update(epochs=len(history), train_seconds=round(time.perf_counter() - started, 2))
    metrics_file = run_dir / "metrics.json"
    tmp = metrics_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**metrics, "history": history}, indent=2))
    tmp.replace(metrics_file)
    return metrics, module


def ensure_teacher(exp: Experiment, exp_dir: Path, plan: RunPlan, store: ResultsStore,
                   say) -> tuple[str, str]:
    """Train the experiment's teacher once (or reuse it); returns (weights file, variant label)."""
    identity = teacher_identity(exp)
    label = "teacher"
    base_dir = exp_dir / label
    marker = base_dir / "identity.json"
    if marker.exists() and json.loads(marker.read_text()) != identity:
        label = f"teacher-{fingerprint(identity)}"
        base_dir = exp_dir / label
        marker = base_dir / "identity.json"
    weights = base_dir / "teacher.pt"
    if weights.exists() and (base_dir / "metrics.json").exists():
        say(f"teacher: reusing {weights}")
        return str(weights), label
    base_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(identity, indent=2, sort_keys=True))
    epochs = "1 epoch of 3 batches (--fast)" if plan.fast else f"{exp.teacher.train.epochs} epochs"
    say(f"teacher: training {teacher_net_spec(exp).name} for {epochs} -> {weights}")
    metrics, module = fit(teacher_stage(exp), exp.teacher.seed, base_dir, label, plan)
    atomic_save({"state_dict": module.student.net.state_dict(),
                 "net": teacher_net_spec(exp).model_dump(), "metrics": metrics}, weights)
    store.record(exp.name, label, exp.teacher.seed, _numeric(metrics))
    return str(weights), label


BOOKKEEPING = {"epochs", "train_seconds", "history"}


def _numeric(metrics: dict) -> dict:
    """The metrics that go to the results store (not the bookkeeping)."""
    return {k: float(v) for k, v in metrics.items() if k not in BOOKKEEPING}


def run_experiment(ef: ExperimentFile, out: Path, seeds: list[int] | None, plan: RunPlan,
                   say=print) -> list[dict]:
    """Every variant x seed of ``ef``; returns one summary dict per run."""
    quiet_lightning()
    check_output(out, ef)
    store = ResultsStore(out / "results.sqlite")
    store.check()
    exp_dir = out / ef.base.name
    for variant, exp in ef.variants.items():
        for seed in seeds or exp.seeds:
            check_run_folder(exp, seed, exp_dir / variant / f"seed{seed}")
    remember_source(ef, exp_dir)
    summaries = []
    teachers: dict[str, str] = {}  # teacher identity -> weights file, one stage per identity
    for variant, exp in ef.variants.items():
        teacher_weights = None
        if needs_teacher_stage(exp):
            key = fingerprint(teacher_identity(exp))
            if key not in teachers:
                teachers[key], _ = ensure_teacher(exp, exp_dir, plan, store, say)
            teacher_weights = teachers[key]
        for seed in seeds or exp.seeds:
            run_dir = exp_dir / variant / f"seed{seed}"
            if exp.continual:
                from distill.continual.runner import run_sequence  # imports this module
                metrics = run_sequence(exp, variant, seed, run_dir, plan, store, say,
                                       teacher_weights)
                summaries.append({"variant": variant, "seed": seed, **metrics})
                continue
            done = run_dir / "metrics.json"
            if done.exists():
                say(f"{variant} seed {seed}: finished earlier, skipped ({done})")
                metrics = json.loads(done.read_text())
            else:
                say(f"{variant} seed {seed}: training -> {run_dir}")
                metrics, _ = fit(exp, seed, run_dir, f"{variant} s{seed}", plan, teacher_weights)
            store.record(exp.name, variant, seed, _numeric(metrics))
            summaries.append({"variant": variant, "seed": seed, **_numeric(metrics)})
    return summaries


def check_output(out: Path, ef: ExperimentFile) -> None:
    """Before anything is written: ``out`` is (or can become) a folder, and the folders the runs
    go to are not files."""
    exp_dir = out / ef.base.name
    folders = [out, exp_dir] + [exp_dir / v for v in ef.variants]
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"--out {shorten(str(out))}: {shorten(str(folder))} is a file, not a "
                            f"folder; give another --out")
    parent = out
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"--out {shorten(str(out))}: {shorten(str(parent))} is a file, so no folder "
                        f"can be made under it; give another --out")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {shorten(str(out))}: {shorten(str(parent))} is not writable; give "
                        f"another --out")


def remember_source(ef: ExperimentFile, exp_dir: Path) -> None:
    """Keep the experiment file and its --set overrides beside the runs, for ``distill resume``."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "experiment.yaml").write_text(Path(ef.path).read_text())
    (exp_dir / "source.json").write_text(json.dumps({"file": str(Path(ef.path).resolve()),
                                                      "sets": list(ef.sets)}, indent=2))


def source_of(exp_dir: Path) -> tuple[str, list[str]]:
    """The experiment file and overrides that a run folder was made with."""
    source = exp_dir / "source.json"
    if not exp_dir.exists():
        raise UserError("no such folder; give an experiment folder runs/<name> made by "
                        "`distill run`", file=str(exp_dir))
    if not exp_dir.is_dir():
        raise UserError("is a file; give an experiment folder runs/<name> made by `distill run`",
                        file=str(exp_dir))
    if not source.is_file():
        raise UserError(f"{exp_dir} is not an experiment folder made by `distill run` "
                        f"(no source.json); give the folder runs/<name>")
    from distill.config.yaml_lines import read_text
    try:
        kept = json.loads(read_text(source, "source file"))
    except json.JSONDecodeError as e:
        raise UserError(f"not JSON ({e.msg}); it is written by `distill run`: run the experiment "
                        f"file again with `distill run FILE --out {exp_dir.parent}`",
                        file=str(source), line=e.lineno) from None
    sets = kept.get("sets") if isinstance(kept, dict) else None
    if not isinstance(sets, list) or not all(isinstance(x, str) for x in sets):
        raise UserError(f"has no list of --set overrides under \"sets\"; it is written by "
                        f"`distill run`: run the experiment file again with `distill run FILE "
                        f"--out {exp_dir.parent}`", file=str(source))
    return str(exp_dir / "experiment.yaml"), sets


def validate_builds(ef: ExperimentFile) -> None:
    """Build every variant once (data, networks, dry forward, objective binding), training nothing."""
    quiet_lightning()
    for variant, exp in ef.variants.items():
        try:
            check_trainer_keys(exp.trainer)
            if not exp.data.labels and needs_teacher_stage(exp):
                raise ConfigError("teacher.train", "the teacher stage trains on the labels, but "
                                                   "`data.labels: false` says there are none; give "
                                                   "`teacher.checkpoint` or drop `teacher.train`")
            seeded(exp.seeds[0])
            data = build_data(exp, exp.seeds[0])
            from distill.continual.runner import check_continual  # imports this module
            tasks = check_continual(exp, data)
            teacher = build_teacher(exp, data, None)
            build_module(exp, data, teacher, tasks=tasks)
        except UserError as e:
            raise ef.locate(e, variant) from None
