"""A grid of V KD variants (T = 2, 4, 8, ...) with one frozen teacher, in torchdistill and in the
workbench, whole grids timed: torchdistill trains each variant as its own run (its own process,
the teacher at every step, as its examples do), the workbench as one ``distill run`` of the grid
(the teacher's outputs computed once per epoch and shared by the variants, the default).
resnet56 -> resnet20 on the same CIFAR-10-format files (generated 32x32 images, augmented by crop
and flip), batch 64, CE + KD, SGD, one torch thread a process.

    .venv/bin/python benchmarks/torchdistill_grid.py [--variants 3] [--epochs 2] [--images 1280]
                                                     [--repeats 2]
                                                     [--venv ~/.cache/distill-benchmarks/torchdistill-venv]

torchdistill's side is ``torchdistill_steps.py``'s (its environment, YAML configuration, models,
transforms and loop), run for whole epochs; the workbench's is ``kd_grid.py``'s KD grid. Each
side's wall time is that of its processes, start-up included; the two sides in turn,
``--repeats`` times. Left out in torchdistill's favour: the test pass after every epoch and the
checkpoints, which the workbench's grid does and torchdistill's runs here do not.
Run by hand, results in the README; never part of the tests.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torchdistill_steps  # noqa: E402
from cifar_steps import cpu_model, write_cifar10  # noqa: E402
from kd_grid import grid_file, temperatures, timed_grid  # noqa: E402
from torchdistill_steps import DEFAULT_VENV, STUDENT, TEACHER, ensure_venv  # noqa: E402


def torchdistill_grid(python: Path, work: Path, args) -> float:
    """Every variant as a torchdistill run of its own, one after the other; their wall time."""
    started = time.perf_counter()
    for t in temperatures(args.variants):
        done = subprocess.run([str(python), __file__, "--one", str(t), "--epochs",
                               str(args.epochs), "--work", str(work)],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"torchdistill T = {t} failed:\n{done.stderr[-3000:]}")
        facts = json.loads(done.stdout.strip().splitlines()[-1])
        if facts["images"] != args.images:
            sys.exit(f"torchdistill trained {facts['images']} images, not {args.images}")
    return time.perf_counter() - started


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--variants", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--images", type=int, default=1280)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                   help="torchdistill's virtual environment (created when absent)")
    p.add_argument("--one", type=float, help=argparse.SUPPRESS)  # a torchdistill run at T
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one is not None:
        torch.set_num_threads(1)
        print(json.dumps(torchdistill_steps.torchdistill_run(Path(args.work), None, args.one,
                                                             args.epochs)))
        return
    python, venv_line = ensure_venv(args.venv.expanduser())
    print(venv_line)
    print(f"{cpu_model()}, 1 torch thread a process; torch {torch.__version__}; {TEACHER} -> "
          f"{STUDENT}, {args.variants} KD variants (T = "
          f"{', '.join(map(str, temperatures(args.variants)))}) x 1 seed, {args.epochs} epochs of "
          f"{args.images} augmented 32x32 images, batch 64")
    args.pair = f"{TEACHER}:{STUDENT}"  # what kd_grid's grid file reads
    seconds = {"torchdistill": [], "workbench": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_cifar10(work / "data", images=args.images)
        from students import build_network
        torch.manual_seed(0)
        net = build_network(TEACHER, {}, num_classes=10, input_shape=(3, 32, 32))
        torch.save(net.net.state_dict(), work / "teacher.pt")
        grid_file(work, "kd", args)
        for _ in range(args.repeats):
            seconds["torchdistill"].append(torchdistill_grid(python, work, args))
            seconds["workbench"].append(timed_grid(work, "kd", args)[0])
    wall = {side: statistics.median(s) for side, s in seconds.items()}
    for side, runs in seconds.items():
        print(f"{side:12s} grid: {wall[side]:7.1f} s  (runs: {', '.join(f'{s:.1f}' for s in runs)})")
    print(f"torchdistill / workbench: {wall['torchdistill'] / wall['workbench']:.3f} "
          f"(the workbench this many times faster; median of {args.repeats}; torchdistill without "
          f"the test passes and checkpoints the workbench's grid does)")


if __name__ == "__main__":
    main()
