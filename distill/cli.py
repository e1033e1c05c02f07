"""``distill run | validate | compare | list | resume``. User mistakes print one line
(``FILE:LINE: key.path: message``) and exit 2, with no traceback."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.errors import UserError

FORMATS = ("table", "md", "csv", "json", "latex")


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas, got {text!r}")


def _load(args):
    from distill.config import load_experiment
    from distill.engine.runner import validate_builds

    ef = load_experiment(args.file, args.set or [], getattr(args, "variant", None))
    validate_builds(ef)
    return ef


def cmd_validate(args) -> int:
    ef = _load(args)
    names = ", ".join(ef.variants)
    print(f"{args.file}: ok — experiment {ef.base.name!r}, variants {names}, "
          f"seeds {ef.base.seeds}")
    return 0


def cmd_run(args) -> int:
    from distill.engine.runner import RunPlan, run_experiment

    ef = _load(args)
    out = Path(args.out) / "_fast" if args.fast else Path(args.out)
    run_experiment(ef, out, args.seeds, RunPlan(fast=args.fast), say=_say)
    print()
    _print_table(out / ef.base.name, "table", None, baseline=ef.baseline, order=list(ef.variants),
                 baseline_if_present=True)
    return 0


def cmd_resume(args) -> int:
    from distill.engine.runner import source_of

    exp_dir = Path(args.dir)
    args.file, args.set = source_of(exp_dir)
    args.out, args.fast, args.seeds, args.variant = str(exp_dir.parent), False, None, None
    return cmd_run(args)


def cmd_compare(args) -> int:
    _print_table(Path(args.dir), args.format, args.metric, baseline=args.baseline)
    return 0


def _print_table(target: Path, fmt: str, metrics, baseline=None, order=None,
                 baseline_if_present=False) -> None:
    from distill.results.report import comparison

    text_or_table = comparison(target, fmt, metrics, baseline, order, baseline_if_present)
    if fmt == "table":
        from rich.console import Console
        Console(width=None if sys.stdout.isatty() else 120).print(text_or_table)
    else:
        sys.stdout.write(text_or_table if text_or_table.endswith("\n") else text_or_table + "\n")


def cmd_list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from distill import registry
    from distill.catalog import load_all

    load_all()

    table = Table(title="Registered names")
    for col in ("kind", "name", "description"):
        table.add_column(col)
    for reg in (registry.objectives, registry.teachers, registry.networks, registry.datasets,
                registry.augmentations, registry.evaluators, registry.optimizers,
                registry.schedules):
        for entry in reg.entries():
            table.add_row(reg.kind, entry.name, entry.description)
        table.add_section()
    Console().print(table)
    return 0


def _say(text: str) -> None:
    print(text, flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distill", description="Knowledge-distillation workbench.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train the teacher stage, every variant x seed, print the table")
    run.add_argument("file")
    run.add_argument("--out", default="runs", help="output root (default: runs)")
    run.add_argument("--variant", action="append", help="only this variant (repeatable)")
    run.add_argument("--seeds", type=_seeds, help="seeds to run instead of the file's, e.g. 0,1")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                     help="override one key of the file (repeatable)")
    run.add_argument("--fast", action="store_true",
                     help="one epoch of a few batches per stage, under <out>/_fast, to check a file")
    run.add_argument("--resume", action="store_true",
                     help="continue where an interrupted run stopped (what re-running does anyway)")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check a file without training (exit 0 or 2)")
    val.add_argument("file")
    val.add_argument("--set", action="append", metavar="KEY.PATH=VALUE")
    val.set_defaults(func=cmd_validate)

    cmp_ = sub.add_parser("compare", help="the method table of runs/<name> (or of all of runs/)")
    cmp_.add_argument("dir")
    cmp_.add_argument("--format", choices=FORMATS, default="table")
    cmp_.add_argument("--metric", action="append", help="only this metric (repeatable)")
    cmp_.add_argument("--baseline", help="variant the differences are taken to")
    cmp_.set_defaults(func=cmd_compare)

    lst = sub.add_parser("list", help="every registered objective, teacher role, network, dataset")
    lst.set_defaults(func=cmd_list)

    res = sub.add_parser("resume", help="continue the experiment in runs/<name>")
    res.add_argument("dir")
    res.set_defaults(func=cmd_resume)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue where it stopped",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
