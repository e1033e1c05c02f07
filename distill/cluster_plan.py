"""``distill plan``: the commands of a grid for a cluster scheduler. Each is self-contained (the
working directory, the interpreter, the file and every option given to the plan), so a job array
runs line k as its task k. The teacher stages come first, as one job the others depend on; the
results store is made again from the run folders at the end (``distill rebuild``), since several
machines writing one SQLite file on a network filesystem is not safe."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from distill.config.load import ExperimentFile
from distill.errors import UserError
from distill.teacher_stage import stage_keys


def plan_commands(ef: ExperimentFile, args) -> tuple[list[str], list[str], list[str]]:
    """(teacher commands, one command per variant x seed, the commands for afterwards)."""
    given = {"the working directory": os.getcwd(), "FILE": args.file, "--out": args.out,
             **{f"--{key} {value}": value for key in ("set", "sweep")
                for value in getattr(args, key) or []}}
    for what, text in given.items():
        if "\n" in text or "\r" in text:
            raise UserError(f"{what!s:.60} holds a line break; the plan's commands are one a line "
                            f"(a job array reads line k): rename it or give it without one")
    here = shlex.quote(os.getcwd())
    cli = [sys.executable, "-m", "distill.cli"]
    out = str(Path(args.out).resolve())
    options = []
    for key in ("set", "sweep"):
        for value in getattr(args, key) or []:
            options += [f"--{key}", value]
    run = [*cli, "run", str(Path(args.file).resolve()), "--out", out, *options]

    def line(words: list[str]) -> str:
        return f"cd {here} && " + " ".join(shlex.quote(w) for w in words)

    has_stage = any(key is not None for exp in ef.variants.values() for key in stage_keys(exp))
    chosen = [word for variant in args.variant or [] for word in ("--variant", variant)]
    if args.seeds:
        chosen += ["--seeds", ",".join(map(str, args.seeds))]
    teachers = [line(run + chosen + ["--teachers-only"])] if has_stage else []
    grid = [line(run + ["--variant", variant, "--seeds", str(seed)])
            for variant, exp in ef.variants.items() for seed in (args.seeds or exp.seeds)]
    after = [line([*cli, "rebuild", out]),
             line([*cli, "compare", str(Path(out) / ef.base.name)])]
    return teachers, grid, after
