"""The workbench against a plain PyTorch loop doing exactly the same work on a CIFAR-shaped KD
workload: the same CIFAR-10-format files (generated 32x32 images, read by the real loader), the
same batches and augmented inputs (the data module's loader and its crop and flip), a frozen
teacher's forward pass at every step (`teacher: {cache: off}`: the plain loop has no shared
teacher tables), the student's CE + KD (T = 4) step with SGD.

    .venv/bin/python benchmarks/cifar_steps.py [--pairs resnet56:resnet20,resnet32x4:resnet8x4]
                                               [--steps 24] [--warmup 4] [--repeats 3]
                                               [--channels-last] [--profile K]
                                               [--allocator as-is|kept|default]
                                               [--deterministic as-is|on|off] [--one-process]

``--channels-last``: both sides keep weights and images in NHWC memory order, the workbench by
its experiment file's ``channels_last: true``, the plain loop by hand.

``--profile K`` (off by default): the timed steps run under torch's profiler (slower on both
sides, and the peak memory includes the profiler's records); each pair's K operations of most
self CPU time are printed with their milliseconds and calls a step on each side (medians over
the repeats): where a gap between the two sides comes from, operation by operation.

``--allocator``: ``as-is`` (what a user gets: the plain loop with glibc's defaults, the workbench
keeping the memory it frees, as every stage does once its trainer is made, see
distill/engine/allocator.py), ``kept`` (the plain loop also keeps it, set at the same point:
after its networks and data are built), ``default`` (both with glibc's defaults: the workbench's
setting is skipped, as it is when the environment sets glibc's tunables). glibc's settings
inherited from the environment are removed for ``as-is`` and ``kept``.

``--deterministic``: ``as-is`` (the workbench in its default deterministic mode, for exact
resume: ``torch.use_deterministic_algorithms(True)`` without torch's NaN fill of new tensors; the
plain loop without it), ``on`` (the plain loop in the same mode, set where the allocator's is),
``off`` (the workbench's file sets ``trainer: {deterministic: false}``): the engine's cost apart
from the mode's.

``--one-process``: both sides in one process, in turn, ``--repeats`` times: the same libraries
loaded, the same memory behind them, glibc keeping freed memory on both from the start (the
plain side too, unlike ``as-is``), every other setting of the process put back after each side;
the peak memory printed is the process's.

Otherwise each measurement is its own process (one torch thread), plain and workbench in turn; a
process times ``--steps`` training steps after ``--warmup`` and reports its peak resident memory
and the minor page faults of the timed steps. Prints steps/s, the ratio workbench/plain, the
peak memory and page faults a step of each, median over ``--repeats``, and the median and
range of each repeat's own ratio (the workbench against the plain run just before it: less
moved by a machine whose speed drifts between minutes). Run by hand, results in the README;
never part of the tests.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
GLIBC_SETTINGS = ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
IMAGES = 2560  # training images: 40 batches of 64, one epoch holds the timed steps
sys.path.insert(0, str(ROOT))

EXPERIMENT = """\
name: bench
seeds: [0]
data: {{name: cifar10, root: {root}, batch_size: 64, num_workers: 0}}
threads: 1
channels_last: {channels_last}
{trainer}teacher: {{role: frozen, net: {{name: {teacher}}}, checkpoint: {weights}, cache: off}}
student: {{net: {{name: {student}}}}}
train: {{epochs: 1, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 5.0e-4}}}}
objectives:
  - {{name: ce}}
  - {{name: kd, temperature: 4}}
"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_cifar10(root: Path, images: int) -> None:
    """CIFAR-10's python-version files with random images: the real format, read by the real
    loader."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per = images // 5
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, per).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=4)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=4)


def experiment_file(work: Path, teacher: str, student: str, channels_last: bool = False,
                    deterministic: bool = True) -> Path:
    from students import build_network

    weights = work / f"{teacher}.pt"
    if not weights.exists():
        torch.manual_seed(0)
        net = build_network(teacher, {}, num_classes=10, input_shape=(3, 32, 32))
        torch.save(net.net.state_dict(), weights)
    f = experiment_path(work, f"{teacher}:{student}", channels_last)
    f.write_text(EXPERIMENT.format(root=work / "data", teacher=teacher, student=student,
                                   weights=weights, channels_last=str(channels_last).lower(),
                                   trainer="" if deterministic
                                   else "trainer: {deterministic: false}\n"))
    return f


def experiment_path(work: Path, pair: str, channels_last: bool) -> Path:
    return work / f"{pair.replace(':', '-')}{'-nhwc' if channels_last else ''}.yaml"


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class StepClock:
    """Times steps ``warmup`` .. ``warmup + steps`` of a training loop and counts the minor page
    faults they take, under ``profiler`` (a ``torch.profiler.profile``) if one is given."""

    def __init__(self, warmup: int, steps: int, profiler=None):
        self.warmup, self.steps, self.count, self.started, self.seconds = warmup, steps, 0, 0.0, 0.0
        self.faults = 0
        self.profiler = profiler

    def tick(self) -> bool:
        """Call before each step; False once the timed steps are done."""
        if self.count == self.warmup:
            if self.profiler is not None:
                self.profiler.start()
            self.faults = minor_faults()
            self.started = time.perf_counter()
        if self.count == self.warmup + self.steps:
            self.seconds = time.perf_counter() - self.started
            self.faults = minor_faults() - self.faults
            if self.profiler is not None:
                self.profiler.stop()
            return False
        self.count += 1
        return True


def plain(path: Path, clock: StepClock, keep_memory: bool = False,
          deterministic: bool = False) -> None:
    """The same work as a bare loop: the data module's batches and augmentation, the frozen
    teacher's logits, CE + KD, SGD (in NHWC memory order when the file asks for it); with
    ``keep_memory``, glibc keeps freed memory from where a stage's trainer would set it, with
    ``deterministic`` the loop runs in the workbench's deterministic mode from there."""
    from distill.config import load_experiment
    from distill.engine.build import build_data, build_module, build_teacher, seeded

    exp = load_experiment(str(path)).variants["default"]
    seeded(0)
    data = build_data(exp, 0)
    role = build_teacher(exp, data, None)
    teacher = role.network.eval()
    student = build_module(exp, data, role).student.train()
    layout = torch.channels_last if exp.channels_last else torch.contiguous_format
    teacher.to(memory_format=layout), student.to(memory_format=layout)
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    if keep_memory:
        from distill.engine.allocator import keep_freed_memory

        keep_freed_memory()
    if deterministic:
        from torch.utils import deterministic as mode

        torch.use_deterministic_algorithms(True)
        mode.fill_uninitialized_memory = False
    epoch = 0
    while True:
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            if not clock.tick():
                return
            x, y, _ = data.training_batch(batch, epoch)
            x = x.contiguous(memory_format=layout)
            with torch.no_grad():
                t_logits = teacher(x).logits
            logits = student(x).logits
            kd = F.kl_div(F.log_softmax(logits / 4, 1), F.softmax(t_logits / 4, 1),
                          reduction="batchmean") * 16
            loss = F.cross_entropy(logits, y) + kd
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch += 1


def workbench(path: Path, clock: StepClock, out: Path) -> None:
    """The stage a ``distill run`` trains (its trainer, checkpoints, logs and the file's
    ``channels_last``), timed at each optimiser step by the module's own hook (a callback's would
    send the steps through Lightning's plumbing, see DistillationModule.steps_directly)."""
    from distill.config import load_experiment
    from distill.engine.acceleration import accelerate
    from distill.engine.build import build_data, build_module, build_teacher, seeded
    from distill.engine.stage import RunPlan, stage_trainer
    from distill.engine.trainer_args import quiet_lightning

    class Stop(Exception):
        pass

    quiet_lightning()
    exp = load_experiment(str(path)).variants["default"]
    seeded(0)
    data = build_data(exp, 0)
    module = build_module(exp, data, build_teacher(exp, data, None))
    accelerate(module, data, exp.channels_last, exp.compile)
    clipping = module.on_before_optimizer_step

    def clocked(optimizer):  # at every optimiser step (a Lightning step may take several)
        if not clock.tick():
            raise Stop
        clipping(optimizer)

    module.on_before_optimizer_step = clocked
    trainer = stage_trainer(exp, out, "bench", RunPlan(interactive=False))
    try:
        trainer.fit(module, datamodule=data)
    except Stop:
        pass


def measure(args, kind: str, path: Path) -> dict:
    """One side's timed steps: steps/s, operations, page faults a step, the process's peak."""
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) \
        if args.profile else None
    clock = StepClock(args.warmup, args.steps, profiler)
    # each side as a stage runs, without the NaN fill (deterministic mode's: the plain side's is
    # on only with --deterministic on), the process's settings put back after it
    from distill.engine.process_settings import keeps_process_settings

    if kind == "plain":
        keeps_process_settings(plain)(path, clock, keep_memory=args.allocator == "kept",
                                      deterministic=args.deterministic == "on")
    else:
        with tempfile.TemporaryDirectory() as out:
            keeps_process_settings(workbench)(path, clock, Path(out))
    ops = {} if profiler is None else {  # milliseconds and calls a step, by operation
        e.key: (e.self_cpu_time_total / 1000 / args.steps, e.count / args.steps)
        for e in profiler.key_averages()}
    return {"steps_per_s": args.steps / clock.seconds, "ops": ops,
            "faults_per_step": clock.faults / args.steps,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def one(args) -> None:
    """A process of its own for one side (``--one plain|workbench``), or for both in turn,
    ``--repeats`` times (``--one both``, for ``--one-process``): glibc keeps freed memory from
    the start on both sides (its setting cannot be put back; every other setting of the process
    is put back after each side, see :func:`measure`)."""
    torch.set_num_threads(1)
    path = experiment_path(Path(args.work), args.pair, args.channels_last)
    if args.one != "both":
        print(json.dumps(measure(args, args.one, path)))
        return
    from distill.engine.allocator import keep_freed_memory

    keep_freed_memory()
    runs = {"plain": [], "workbench": []}
    for _ in range(args.repeats):
        for kind, done in runs.items():
            done.append(measure(args, kind, path))
    print(json.dumps(runs))


def print_operations(results: dict, top: int) -> None:
    """The ``top`` operations of most self CPU time: milliseconds and calls a step on each side,
    medians over the repeats (0 for a repeat that did not run the operation); then all
    operations, the median of each repeat's total."""
    def median_of(runs, op, field):
        return statistics.median(r["ops"].get(op, (0.0, 0.0))[field] for r in runs)

    runs = (results["plain"], results["workbench"])
    operations = {op for side in runs for r in side for op in r["ops"]}
    ms = {op: [median_of(side, op, 0) for side in runs] for op in operations}
    print(f"  {'operation (self CPU time, ms a step)':48s} {'plain':>9s} {'workbench':>9s} "
          f"{'difference':>10s}   calls a step (plain, workbench)")
    for op in sorted(operations, key=lambda o: -max(ms[o]))[:top]:
        plain_ms, workbench_ms = ms[op]
        calls = [median_of(side, op, 1) for side in runs]
        print(f"  {op[:48]:48s} {plain_ms:9.2f} {workbench_ms:9.2f} "
              f"{workbench_ms - plain_ms:+10.2f}   {calls[0]:g}, {calls[1]:g}")
    plain_ms, workbench_ms = (statistics.median(sum(t for t, _ in r["ops"].values())
                                                for r in side) for side in runs)
    print(f"  {'all operations':48s} {plain_ms:9.2f} {workbench_ms:9.2f} "
          f"{workbench_ms - plain_ms:+10.2f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", default="resnet56:resnet20,resnet32x4:resnet8x4")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--channels-last", action="store_true",
                   help="both sides in NHWC memory order (the file's channels_last: true)")
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="run the timed steps under torch's profiler and print the K operations "
                        "of most CPU time on each side")
    p.add_argument("--allocator", choices=["as-is", "kept", "default"], default="as-is",
                   help="glibc's settings on each side (see the module's docstring)")
    p.add_argument("--deterministic", choices=["as-is", "on", "off"], default="as-is",
                   help="deterministic mode on each side (see the module's docstring)")
    p.add_argument("--one-process", action="store_true",
                   help="both sides in one process, in turn (glibc keeps freed memory on both)")
    p.add_argument("--one", choices=["plain", "workbench", "both"], help=argparse.SUPPRESS)
    p.add_argument("--pair", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.warmup + args.steps >= IMAGES // 64:
        sys.exit(f"--warmup + --steps must stay inside one epoch of {IMAGES // 64} batches (no "
                 f"end-of-epoch validation or checkpoint in the timed steps)")
    if args.one:
        return one(args)
    if args.one_process and args.allocator != "as-is":
        sys.exit("--one-process keeps freed memory on both sides: leave --allocator out")
    print(f"{cpu_model()}, {torch.get_num_threads()} threads available, 1 used; "
          f"torch {torch.__version__}; batch 64, CE + KD, frozen teacher"
          f"{'; NHWC memory order (channels_last)' if args.channels_last else ''}"
          f"{'; under the profiler (slower on both sides)' if args.profile else ''}"
          f"; allocator {'kept on both sides' if args.one_process else args.allocator}"
          f"; deterministic mode {args.deterministic}"
          f"{'; both sides in one process, in turn' if args.one_process else ''}")
    environment = {k: v for k, v in os.environ.items() if k not in GLIBC_SETTINGS}
    if args.allocator == "default":  # any tunable: the workbench then leaves glibc as it is
        environment["GLIBC_TUNABLES"] = "glibc.malloc.perturb=0"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_cifar10(work / "data", images=IMAGES)
        for pair in args.pairs.split(","):
            experiment_file(work, *pair.split(":"), channels_last=args.channels_last,
                            deterministic=args.deterministic != "off")
            def side(kind: str):
                done = subprocess.run(
                    [sys.executable, __file__, "--one", kind, "--pair", pair, "--work", tmp,
                     "--steps", str(args.steps), "--warmup", str(args.warmup),
                     "--repeats", str(args.repeats),
                     *(["--channels-last"] if args.channels_last else []),
                     "--profile", str(args.profile), "--allocator", args.allocator,
                     "--deterministic", args.deterministic],
                    capture_output=True, text=True, env=environment)
                if done.returncode:
                    sys.exit(f"{kind} {pair} failed:\n{done.stderr[-3000:]}")
                return json.loads(done.stdout.strip().splitlines()[-1])

            if args.one_process:
                results = side("both")
            else:
                results = {"plain": [], "workbench": []}
                for _ in range(args.repeats):
                    for kind in results:
                        results[kind].append(side(kind))
            speed, peak, faults = ({k: statistics.median(r[field] for r in v)
                                    for k, v in results.items()}
                                   for field in ("steps_per_s", "peak_mib", "faults_per_step"))
            paired = [w["steps_per_s"] / p["steps_per_s"]
                      for p, w in zip(results["plain"], results["workbench"])]
            whole = f" (the process's peak {max(peak.values()):.0f} MiB)"
            memory = ({"plain": "", "workbench": whole} if args.one_process
                      else {k: f" ({v:.0f} MiB)" for k, v in peak.items()})
            print(f"{pair}: plain {speed['plain']:.3f} steps/s{memory['plain']}, "
                  f"workbench {speed['workbench']:.3f} steps/s{memory['workbench']}, "
                  f"ratio {speed['workbench'] / speed['plain']:.3f}  (median of {args.repeats}); "
                  f"each repeat's ratio to the plain run just before it: median "
                  f"{statistics.median(paired):.3f}, {min(paired):.3f}-{max(paired):.3f}; "
                  f"minor page faults a timed step: plain {faults['plain']:.0f}, workbench "
                  f"{faults['workbench']:.0f}")
            if args.profile:
                print_operations(results, args.profile)


if __name__ == "__main__":
    main()
