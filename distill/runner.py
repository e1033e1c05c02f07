"""Running an experiment file: the teacher stage (once), then every variant x seed, each in
``<out>/<name>/<variant>/seed<k>/`` (a single stage, :mod:`distill.engine.stage`, or a task
sequence, :mod:`distill.continual.runner`), each result recorded in ``<out>/results.sqlite``. A run
whose ``metrics.json`` exists is skipped; an interrupted one continues from its checkpoint.

Several processes may run the same file into the same ``--out`` at once: each run folder is held by
one process at a time (:class:`~distill.engine.run_lock.RunLock`). A process skips a run another
one holds, comes back to it at the end and waits for it, so every process finishes with the full
table, equal to a sequential run's.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from distill.atomic_write import atomic_save, atomic_write_text
from distill.config.load import ExperimentFile
from distill.config.schema import Experiment
from distill.continual.runner import run_sequence
from distill.engine.build import teacher_net_spec, teacher_parts
from distill.engine.process_rank import Unlocked, is_writer, several, wait_for
from distill.engine.run_lock import RunLock
from distill.engine.stage import RunPlan, check_run_folder, fit
from distill.engine.trainer_args import quiet_lightning
from distill.errors import UserError
from distill.fingerprint import fingerprint
from distill.registry import objectives, teachers
from distill.results.store import NoStore, ResultsStore
from distill.results.recording import numeric, read_object, record_stage
from distill.teacher_stage import stage_keys, teacher_identity, teacher_stage


def reads_teacher(exp: Experiment) -> bool:
    """Whether a variant's run uses its teacher: an objective reads the teacher or samples from
    it, the student starts from it, an evaluator measures it, the role is evaluated beside the
    student (an ensemble's accuracy is a row), or it is a task sequence (always given the
    teacher)."""
    if exp.continual is not None or exp.student.init.from_ == "teacher":
        return True
    if exp.teacher is not None and teachers.get(exp.teacher.name, "teacher.role").target.reported:
        return True
    if any("teacher" in spec.params().get("of", ["teacher"]) for spec in exp.evaluate):
        return True
    return any(objectives.get(spec.name, "objectives").target.reads_teacher(spec.params())
               for spec in exp.objectives)


def ensure_teacher(exp: Experiment, exp_dir: Path, plan: RunPlan, store: ResultsStore,
                   say, wait: bool = True) -> str | None:
    """Train the experiment's teacher once (or reuse it); returns its weights file. A process
    that finds another one training the same teacher waits for it, or returns None when not
    ``wait``."""
    identity = teacher_identity(exp)
    label = "teacher"
    base_dir = exp_dir / label
    marker = base_dir / "identity.json"
    if marker.exists() and read_object(marker) != identity:
        label = f"teacher-{fingerprint(identity)}"
        base_dir = exp_dir / label
        marker = base_dir / "identity.json"
    weights = base_dir / "teacher.pt"
    writer = is_writer([exp.trainer])
    lock = RunLock(base_dir) if writer else Unlocked()
    if not lock.try_acquire():
        if not wait:
            say(f"teacher: another process is training it in {base_dir}; the runs that do not "
                f"read it go first")
            return None
        say(f"teacher: another process is training it in {base_dir}; waiting for it")
        lock.acquire()
    with lock:
        if weights.exists() and (base_dir / "metrics.json").exists():
            say(f"teacher: reusing {weights}")
            return str(weights)
        if writer:
            atomic_write_text(marker, json.dumps(identity, indent=2, sort_keys=True))
        epochs = ("1 epoch of 3 batches (--fast)" if plan.fast
                  else f"{exp.teacher.train.epochs} epochs")
        say(f"teacher: training {teacher_net_spec(exp).name} for {epochs} -> {weights}")
        metrics, module = fit(teacher_stage(exp), exp.teacher.seed, base_dir, label, plan,
                              say=say)
        if not writer:
            wait_for(weights)
            return str(weights)
        atomic_save({"state_dict": module.student.net.state_dict(),
                     "net": teacher_net_spec(exp).model_dump(), "metrics": metrics}, weights)
        store.record(exp.name, label, exp.teacher.seed, numeric(metrics))
    return str(weights)


@dataclass
class Run:
    """One variant x seed of an experiment file, in ``run_dir``."""

    variant: str
    exp: Experiment
    seed: int
    run_dir: Path
    teacher_weights: list[str | None] | None  # per teacher network, see build_teacher

    def execute(self, plan: RunPlan, store: ResultsStore, say) -> dict:
        """Train (or find finished) and record this run; returns its summary."""
        variant, exp, seed = self.variant, self.exp, self.seed
        if exp.continual:
            def record(metrics: dict, task: int) -> None:
                store.record(exp.name, variant, seed, metrics, task=task)

            metrics = run_sequence(exp, variant, seed, self.run_dir, plan, record, say,
                                   self.teacher_weights)
            return {"variant": variant, "seed": seed, **metrics}
        done = self.run_dir / "metrics.json"
        if done.exists():
            say(f"{variant} seed {seed}: finished earlier, skipped ({done})")
            metrics = read_object(done)
        else:
            say(f"{variant} seed {seed}: training -> {self.run_dir}")
            metrics, _ = fit(exp, seed, self.run_dir, f"{variant} s{seed}", plan,
                             self.teacher_weights, say)
        return {"variant": variant, "seed": seed,
                **record_stage(store, exp.name, variant, seed, metrics)}


def run_experiment(ef: ExperimentFile, out: Path, seeds: list[int] | None, plan: RunPlan,
                   say=print, teachers_only: bool = False) -> list[dict]:
    """Every variant x seed of ``ef``; returns one summary dict per run. Each teacher stage first
    (a process that finds another one training it goes on); then the runs that do not read a
    teacher, then those that do, each waiting for its teacher. Runs that another process holds
    are left for the end, then waited for. ``teachers_only``: the teacher stages alone (the first
    job of a cluster plan)."""
    quiet_lightning()
    check_output(out, ef)
    writer = is_writer([exp.trainer for exp in ef.variants.values()])
    store = ResultsStore(out / "results.sqlite") if writer else NoStore()
    if not writer:
        say = lambda _: None  # noqa: E731 - the writer says it
    store.check()
    exp_dir = out / ef.base.name
    for variant, exp in ef.variants.items():
        for seed in seeds or exp.seeds:
            check_run_folder(exp, seed, exp_dir / variant / f"seed{seed}")
    if writer:
        remember_source(ef, exp_dir)
    summaries, held_elsewhere = [], []
    # each variant's teacher stages (one per teacher network) and whether its runs read them
    stages = {variant: stage_keys(exp) for variant, exp in ef.variants.items()}
    reads = {variant: reads_teacher(exp) for variant, exp in ef.variants.items()}
    stage_exp = {}  # each stage as a one-teacher experiment, in file order
    for variant, keys in stages.items():
        for key, (_, part) in zip(keys, teacher_parts(ef.variants[variant])):
            if key is not None:
                stage_exp.setdefault(key, part)
    # processes training together (DDP) make every decision alike: none skips what another holds
    together = any(several(exp.trainer) for exp in ef.variants.values())
    teachers = {key: ensure_teacher(exp, exp_dir, plan, store, say,
                                    wait=teachers_only or together)
                for key, exp in stage_exp.items()}  # weights file, None: held elsewhere
    if teachers_only:
        return summaries
    for variant in sorted(ef.variants, key=reads.get):
        exp, keys = ef.variants[variant], stages[variant]
        teacher_weights = None
        if reads[variant] and keys:
            for key in keys:
                if key is not None and teachers[key] is None:
                    teachers[key] = ensure_teacher(stage_exp[key], exp_dir, plan, store, say)
            teacher_weights = [teachers.get(key) for key in keys]
        for seed in seeds or exp.seeds:
            run = Run(variant, exp, seed, exp_dir / variant / f"seed{seed}", teacher_weights)
            lock = RunLock(run.run_dir) if writer else Unlocked()
            if together and writer:  # the followers train this run next: wait for it
                lock.acquire()
            elif not lock.try_acquire():
                say(f"{variant} seed {seed}: another process is running it; coming back to it "
                    f"at the end")
                held_elsewhere.append(run)
                continue
            with lock:
                summaries.append(run.execute(plan, store, say))
    for key, weights in teachers.items():  # a teacher no run read is still a row of the table
        if weights is None:
            teachers[key] = ensure_teacher(stage_exp[key], exp_dir, plan, store, say)
    for run in held_elsewhere:
        lock = RunLock(run.run_dir) if writer else Unlocked()
        if not lock.try_acquire():
            say(f"{run.variant} seed {run.seed}: waiting for the other process to finish it")
            lock.acquire()
        with lock:
            summaries.append(run.execute(plan, store, say))
    return summaries


def check_output(out: Path, ef: ExperimentFile) -> None:
    """Before anything is written: ``out`` is (or can become) a folder, and the folders the runs
    go to are not files."""
    exp_dir = out / ef.base.name
    folders = [out, exp_dir] + [exp_dir / v for v in ef.variants]
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"--out {out}: {folder} is a file, not a folder; give another --out")
    parent = out
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"--out {out}: {parent} is a file, so no folder can be made under it; "
                        f"give another --out")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {parent} is not writable; give another --out")


def remember_source(ef: ExperimentFile, exp_dir: Path) -> None:
    """Keep the experiment file and its --set overrides beside the runs, for ``distill resume``."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(exp_dir / "experiment.yaml", Path(ef.path).read_text())
    atomic_write_text(exp_dir / "source.json", json.dumps({"file": str(Path(ef.path).resolve()),
                                                           "sets": list(ef.sets),
                                                           "sweeps": list(ef.sweeps)}, indent=2))


def source_of(exp_dir: Path) -> tuple[str, list[str], list[str]]:
    """The experiment file, ``--set`` and ``--sweep`` options that a run folder was made with
    (folders made before sweeps have none)."""
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
    sweeps = kept.get("sweeps", [])
    if not isinstance(sweeps, list) or not all(isinstance(x, str) for x in sweeps):
        raise UserError(f"has no list of --sweep options under \"sweeps\"; it is written by "
                        f"`distill run`: run the experiment file again with `distill run FILE "
                        f"--out {exp_dir.parent}`", file=str(source))
    return str(exp_dir / "experiment.yaml"), sets, sweeps
