"""A grid of V KD variants with one frozen teacher on augmented CIFAR-shaped data, against the
same grid of CE-only runs: the price of the teacher once its outputs are shared by the grid
(``teacher.cache``, the default) and without it (``cache: off``, the teacher at every step of
every variant). Each grid is one ``distill run`` process, timed whole (start-up, every variant,
the test set after each epoch); the three kinds in turn, ``--repeats`` times, each time with a
fresh output folder and no shared tables from an earlier run.

    .venv/bin/python benchmarks/kd_grid.py [--pair resnet56:resnet20] [--variants 3]
                                           [--epochs 2] [--images 1280] [--repeats 2]

Prints each grid's median wall time and peak memory, and the ratios KD/CE with the target
1 + 1/V + 0.1.
Run by hand, results in the README; never part of the tests.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar_steps import ROOT, cpu_model, write_cifar10  # noqa: E402

GRID = """\
name: grid
seeds: [0]
data: {{name: cifar10, root: {root}, batch_size: 64}}
threads: 1
teacher: {{role: frozen, net: {{name: {teacher}}}, checkpoint: {weights}{cache}}}
student: {{net: {{name: {student}}}}}
train: {{epochs: {epochs}, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 5.0e-4}}}}
objectives: [{{name: ce}}]
variants:
{variants}"""


def temperatures(variants: int) -> list[int]:
    """The temperatures of the KD variants: 2, 4, 8, ..."""
    return [2 ** (k + 1) for k in range(variants)]


def grid_file(work: Path, kind: str, args) -> Path:
    """``kind``: ce (V CE-only variants, differing in learning rate), kd (V KD variants,
    differing in temperature) or kd-uncached (the same with ``cache: off``)."""
    teacher, student = args.pair.split(":")
    if kind == "ce":
        lines = [f"  lr{k}: {{train: {{optimizer: {{lr: {0.05 / 2 ** k}}}}}}}"
                 for k in range(args.variants)]
    else:
        lines = [f"  kd-t{t}: {{objectives: [{{name: ce}}, {{name: kd, temperature: {t}}}]}}"
                 for t in temperatures(args.variants)]
    f = work / f"{kind}.yaml"
    f.write_text(GRID.format(root=work / "data", teacher=teacher, student=student,
                             weights=work / kind / "teacher.pt", epochs=args.epochs,
                             cache=", cache: off" if kind == "kd-uncached" else "",
                             variants="\n".join(lines) + "\n"))
    return f


# `distill run` in a process that prints its peak resident memory (KiB) last, on stderr
RUN = ("import resource, sys; from distill.cli import main; code = main(); "
       "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
       "sys.exit(code)")


def timed_grid(work: Path, kind: str, args) -> tuple[float, float]:
    """One ``distill run`` of the grid into a fresh folder, the teacher's weights in a fresh
    folder of their own (no tables shared from an earlier run); its wall time (s) and peak
    memory (MiB)."""
    teacher_dir = work / kind
    shutil.rmtree(teacher_dir, ignore_errors=True)
    teacher_dir.mkdir()
    shutil.copy(work / "teacher.pt", teacher_dir / "teacher.pt")
    out = work / f"out-{kind}"
    shutil.rmtree(out, ignore_errors=True)
    distill = [sys.executable, "-c", RUN, "run", str(work / f"{kind}.yaml"), "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(distill, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{kind} grid failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, int(done.stderr.strip().splitlines()[-1].split()[-1]) / 1024


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pair", default="resnet56:resnet20")
    p.add_argument("--variants", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--images", type=int, default=1280)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    from students import build_network

    v = args.variants
    print(f"{cpu_model()}, 1 torch thread a process; torch {torch.__version__}; {args.pair}, "
          f"{v} variants x 1 seed, {args.epochs} epochs of {args.images} augmented 32x32 images, "
          f"batch 64")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_cifar10(work / "data", images=args.images)
        torch.manual_seed(0)
        net = build_network(args.pair.split(":")[0], {}, num_classes=10, input_shape=(3, 32, 32))
        torch.save(net.net.state_dict(), work / "teacher.pt")
        kinds = ("ce", "kd", "kd-uncached")
        for kind in kinds:
            grid_file(work, kind, args)
        seconds, peak = {kind: [] for kind in kinds}, {kind: [] for kind in kinds}
        for _ in range(args.repeats):
            for kind in kinds:
                s, mib = timed_grid(work, kind, args)
                seconds[kind].append(s)
                peak[kind].append(mib)
    wall = {kind: statistics.median(s) for kind, s in seconds.items()}
    for kind in kinds:
        print(f"{kind:12s} grid: {wall[kind]:7.1f} s  (runs: "
              f"{', '.join(f'{s:.1f}' for s in seconds[kind])}), peak memory "
              f"{statistics.median(peak[kind]):.0f} MiB")
    target = 1 + 1 / v + 0.1
    print(f"KD grid / CE grid: {wall['kd'] / wall['ce']:.3f} with the shared teacher outputs, "
          f"{wall['kd-uncached'] / wall['ce']:.3f} without (target at most {target:.3f} = "
          f"1 + 1/{v} + 0.1; median of {args.repeats})")


if __name__ == "__main__":
    main()
