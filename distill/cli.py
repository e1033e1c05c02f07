"""``distill run | validate | compare | list | resume``. User mistakes print one line
(``FILE:LINE: key.path: message``) and exit 2, with no traceback."""
from __future__ import annotations

import argparse
import errno
import json
import sqlite3
import sys
import warnings
from pathlib import Path

from distill.errors import UserError, one_line, shorten

FORMATS = ("table", "md", "csv", "json", "latex", "html")
DIMENSIONS = ("variant", "experiment", "metric", "task")  # as distill.results.report's
MAX_SEED = 2 ** 32 - 1


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas, got "
                                         f"{shorten(text)}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds takes at least one integer, e.g. 0,1")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise argparse.ArgumentTypeError(f"seed {shorten(str(bad[0]))[1:-1]} is out of range; "
                                         f"seeds are 0 to {MAX_SEED}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is listed twice in {shorten(text)}")
    return seeds


def _jobs(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"--jobs takes a number of processes from 1 to 64, got "
                                         f"{shorten(text)}")
    return int(text)


def _fraction(flag: str):
    """A number strictly between 0 and 1 for ``flag`` (a confidence level, a significance level)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value < 1:
            raise argparse.ArgumentTypeError(f"{flag} takes a number between 0 and 1 (e.g. "
                                             f"{'0.95' if flag == '--ci' else '0.05'}), got "
                                             f"{shorten(text)}")
        return value
    return parse


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (``distill: message; see `distill run --help```),
    exit 2."""

    def error(self, message: str):
        self.exit(2, one_line(f"distill: {message}; see `{self.prog} --help`") + "\n")


def _load(args, without_data: bool = False):
    from distill.config import load_experiment
    from distill.file_check import validate_builds

    ef = load_experiment(args.file, args.set or [], getattr(args, "variant", None),
                         args.sweep or [])
    validate_builds(ef, without_data)
    return ef


def cmd_validate(args) -> int:
    ef = _load(args, args.without_data)
    names = ", ".join(ef.variants)
    print(f"{args.file}: ok — experiment {ef.base.name!r}, variants {names}, "
          f"seeds {ef.base.seeds}{_stood_in(ef) if args.without_data else ''}")
    return 0


def _stood_in(ef) -> str:
    """What ``--without-data`` put in place of the data, for the ok line."""
    from distill.data.declared import STAND_INS

    stood = {}
    for exp in ef.variants.values():
        if exp.data.name in STAND_INS:
            stood[exp.data.name] = STAND_INS[exp.data.name](**exp.data.params())[1]
    if not stood:
        return " (its data are built in: checked as they are)"
    return " (without data: " + "; ".join(f"{name} stood in by {text}"
                                            for name, text in stood.items()) + ")"


def cmd_run(args) -> int:
    from distill.engine.process_rank import is_writer, several
    from distill.engine.stage import RunPlan
    from distill.runner import run_experiment

    if not str(args.out).strip():
        raise UserError("--out '': give the folder the runs go to, e.g. --out runs")
    ef = _load(args)
    out = Path(args.out) / "_fast" if args.fast else Path(args.out)
    if args.teachers_only and args.jobs > 1:
        raise UserError("--teachers-only trains each teacher stage once; give it without --jobs")
    if args.jobs > 1 and any(several(e.trainer) for e in ef.variants.values()):
        raise UserError("--jobs runs several grids' processes; with trainer devices or nodes for "
                        "one run in several processes (ddp) give it without --jobs")
    jobs = start_jobs(args, out / ef.base.name) if getattr(args, "jobs", 1) > 1 else []
    try:
        run_experiment(ef, out, args.seeds, RunPlan(fast=args.fast), say=_say,
                       teachers_only=args.teachers_only)
    finally:
        failed = finish_jobs(jobs)
    if failed:
        raise UserError(f"{failed}; the runs it left are finished by running the same command "
                        f"again")
    if args.teachers_only or not is_writer([e.trainer for e in ef.variants.values()]):
        return 0
    print()
    _print_table(out / ef.base.name, "table", None, baseline=ef.baseline, order=list(ef.variants),
                 baseline_if_present=True)
    return 0


def cmd_plan(args) -> int:
    from distill.cluster_plan import plan_commands

    ef = _load(args, args.without_data)
    teachers, grid, after = plan_commands(ef, args)
    if args.stage != "all":
        for command in teachers if args.stage == "teachers" else grid:
            print(command)
        return 0
    print(f"# {ef.base.name}: {len(teachers)} teacher job(s), then {len(grid)} grid jobs that "
          f"need them; run from any machine that sees the same files")
    if teachers:
        print("# 1. the teacher stages (the grid's jobs depend on them)")
        print("\n".join(teachers))
    print(f"# {2 if teachers else 1}. one job per variant and seed (a job array)")
    print("\n".join(grid))
    print(f"# {3 if teachers else 2}. when all have finished: the results store from the run "
          f"folders, then the table")
    print("\n".join(after))
    return 0


def start_jobs(args, exp_dir: Path) -> list:
    """``--jobs N``: N - 1 more processes running the same command, each logging to
    ``<exp_dir>/jobs/job<k>.log``; the run folders' locks share the grid between them."""
    import subprocess

    command = [sys.executable, "-m", "distill.cli", "run", args.file, "--out", str(args.out)]
    for flag, values in (("--set", args.set), ("--sweep", args.sweep), ("--variant", args.variant)):
        for value in values or []:
            command += [flag, value]
    if args.seeds:
        command += ["--seeds", ",".join(map(str, args.seeds))]
    if args.fast:
        command.append("--fast")
    logs = exp_dir / "jobs"
    logs.mkdir(parents=True, exist_ok=True)
    jobs = []
    for k in range(1, args.jobs):
        log = open(logs / f"job{k}.log", "w", encoding="utf-8")
        jobs.append((k, log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)))
    _say(f"--jobs {args.jobs}: {args.jobs - 1} more processes share the grid, logging to {logs}")
    return jobs


def finish_jobs(jobs: list) -> str | None:
    """Wait for the processes of ``--jobs`` (stopping them when this one is interrupted); what
    went wrong with them, or None."""
    failed = []
    try:
        for k, log, process in jobs:
            if process.wait() != 0:
                failed.append(f"job {k} stopped with exit status {process.returncode} (its log: "
                              f"{log.name})")
    except BaseException:
        for _, _, process in jobs:
            process.terminate()
        raise
    finally:
        for _, log, _ in jobs:
            log.close()
    return "; ".join(failed) or None


def cmd_rebuild(args) -> int:
    from distill.results.rebuild import rebuild_store

    path, count = rebuild_store(Path(args.out))
    print(f"{path}: rebuilt from {count} finished stages")
    return 0


def cmd_resume(args) -> int:
    from distill.runner import source_of

    exp_dir = Path(args.dir)
    args.file, args.set, args.sweep = source_of(exp_dir)
    args.out, args.fast, args.seeds, args.variant = str(exp_dir.parent), False, None, None
    args.jobs, args.teachers_only = 1, False
    return cmd_run(args)


def cmd_compare(args) -> int:
    target = Path(args.dir)
    if not target.exists():
        raise UserError("no such folder; give the output root (runs) or runs/<name>",
                        file=args.dir)
    if not target.is_dir():
        raise UserError("is a file; give the output root (runs) or runs/<name>", file=args.dir)
    _print_table(Path(args.dir), args.format, args.metric, baseline=args.baseline,
                 level=args.ci, alpha=args.paired, by_row=args.rows, by_column=args.columns)
    return 0


def _experiment_folder(text: str) -> Path:
    """``runs/<name>`` made by ``distill run`` (beside the results store), or one line why not."""
    folder = Path(text)
    if not folder.is_dir():
        why = "is a file" if folder.exists() else "no such folder"
        raise UserError(f"{why}; give an experiment folder runs/<name> made by `distill run`",
                        file=text)
    if not (folder.parent / "results.sqlite").is_file():
        raise UserError("is not an experiment folder made by `distill run` (no results.sqlite "
                        "beside it); give runs/<name>", file=text)
    return folder


def cmd_env(args) -> int:
    from distill import environment

    if args.run_dir is None:
        record = environment.current()
    else:
        folder = Path(args.run_dir)
        if not folder.is_dir():
            raise UserError(f"{'is a file' if folder.exists() else 'no such folder'}; give a run "
                            f"folder such as runs/<name>/<variant>/seed0", file=args.run_dir)
        record = environment.read(folder)
        if record is None:
            hint = ("its runs are in <variant>/seed<k> below it" if (folder / "experiment.yaml")
                    .is_file() else "made before records were kept, or damaged")
            raise UserError(f"holds no readable {environment.FILE} ({hint}); give a run folder "
                            f"such as runs/<name>/<variant>/seed0", file=args.run_dir)
    if args.constraints is None:
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
        return 0
    pins = environment.constraints(record)
    if args.constraints == "-":
        sys.stdout.write(pins)
    else:
        from distill.atomic_write import atomic_write_text
        atomic_write_text(args.constraints, pins)
        _say(f"wrote {len(pins.splitlines())} pinned packages to {args.constraints}")
    return 0


def cmd_plot(args) -> int:
    from distill.results.plots import plot_experiment

    folder = _experiment_folder(args.dir)
    for path in plot_experiment(folder, Path(args.out) if args.out else None):
        print(path)
    return 0


def cmd_report(args) -> int:
    from distill.results.html_report import write_report

    folder = _experiment_folder(args.dir)
    print(write_report(folder, Path(args.out) if args.out else None))
    return 0


def _print_table(target: Path, fmt: str, metrics, baseline=None, order=None,
                 baseline_if_present=False, **layout) -> None:
    from distill.results.report import comparison

    text_or_table = comparison(target, fmt, metrics, baseline, order, baseline_if_present,
                               **layout)
    if fmt == "table":
        from rich.console import Console
        Console(width=None if sys.stdout.isatty() else 120).print(text_or_table)
    else:
        sys.stdout.write(text_or_table if text_or_table.endswith("\n") else text_or_table + "\n")


def cmd_list(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from distill import registry
    from distill.catalog import load_all

    load_all()
    if args.modules is not None:
        return list_modules(args)
    if args.input is not None or args.classes is not None or args.param:
        raise UserError("--input, --classes and --param describe the network of --modules NET; "
                        "give --modules too")

    table = Table(title="Registered names")
    for col in ("kind", "name", "description"):
        table.add_column(col)
    for reg in (registry.objectives, registry.teachers, registry.networks, registry.datasets,
                registry.augmentations, registry.evaluators, registry.optimizers,
                registry.schedules):
        for entry in reg.entries():
            # docstring text: [..] is not rich's markup, ``code`` shows as `code`
            table.add_row(reg.kind, entry.name, escape(entry.description.replace("``", "`")))
        table.add_section()
    Console().print(table)
    return 0


def list_modules(args) -> int:
    """The module paths of one network with their output shapes, for ``net.taps``."""
    import inspect

    import torch
    import yaml
    from rich.console import Console
    from rich.table import Table

    from distill.engine.build import user_values
    from distill.registry import networks
    from students import build_network
    from students.module_paths import module_shapes, parse_shape

    target = networks.get(args.modules, "--modules").target
    if {"vocab_size", "text_length"} & set(inspect.signature(target).parameters):
        raise UserError(f"--modules {args.modules}: a text network reads token ids of a text "
                        f"dataset; see its module paths with `distill validate` on a file that "
                        f"uses it, or in its source")
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UserError(f"--param {item[:40]!r}: give key=value, e.g. --param width=16")
        try:
            params[key] = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            raise UserError(f"--param {item[:40]!r}: the value is not a YAML scalar or list; "
                            f"e.g. --param width=16 or --param hidden=[64,64]") from None
    args.input = args.input or "3x32x32"
    args.classes = 10 if args.classes is None else args.classes
    shape = parse_shape(args.input)
    if not 1 <= args.classes <= 100_000:
        raise UserError(f"--classes {args.classes}: give a number of classes from 1 to 100000")
    with user_values("--param"):
        net = build_network(args.modules, params, num_classes=args.classes, input_shape=shape)
    with user_values("--input"):
        rows = module_shapes(net.net, torch.zeros(2, *shape))
    table = Table(title=f"{args.modules} on inputs of {args.input}: module paths (tap them as "
                        f"`taps: {{name: path}}` or `path:input`)")
    for col in ("path", "module", "output"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return 0


def _say(text: str) -> None:
    print(text, flush=True)


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="distill", description="Knowledge-distillation workbench.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train the teacher stage, every variant x seed, print the table")
    run.add_argument("file")
    run.add_argument("--out", default="runs", help="output root (default: runs)")
    run.add_argument("--variant", action="append", help="only this variant (repeatable)")
    run.add_argument("--seeds", type=_seeds, help="seeds to run instead of the file's, e.g. 0,1")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                     help="override one key of the file (repeatable)")
    run.add_argument("--sweep", action="append", metavar="KEY.PATH=V1,V2",
                     help="one variant per value (and per combination with other --sweep and "
                          "the file's sweep:), named after them (repeatable)")
    run.add_argument("--fast", action="store_true",
                     help="one epoch of a few batches per stage, under <out>/_fast, to check a file")
    run.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                     help="run the variants x seeds in N local processes (default 1)")
    run.add_argument("--resume", action="store_true",
                     help="continue where an interrupted run stopped (what re-running does anyway)")
    run.add_argument("--teachers-only", action="store_true",
                     help="train the teacher stages only (the first job of `distill plan`)")
    run.set_defaults(func=cmd_run)

    plan = sub.add_parser("plan", help="one self-contained command per teacher stage and per "
                                       "variant x seed, for a cluster scheduler's job array")
    plan.add_argument("file")
    plan.add_argument("--out", default="runs", help="output root the jobs write to (default: runs)")
    plan.add_argument("--variant", action="append", help="only this variant (repeatable)")
    plan.add_argument("--seeds", type=_seeds, help="seeds to run instead of the file's, e.g. 0,1")
    plan.add_argument("--set", action="append", metavar="KEY.PATH=VALUE")
    plan.add_argument("--sweep", action="append", metavar="KEY.PATH=V1,V2")
    plan.add_argument("--stage", choices=["all", "teachers", "grid"], default="all",
                      help="all (commented, in order), or only the teachers' or the grid's "
                           "commands, one a line (e.g. for a job array)")
    plan.add_argument("--without-data", action="store_true",
                      help="validate with stand-ins for data read from files (see validate)")
    plan.set_defaults(func=cmd_plan)

    val = sub.add_parser("validate", help="check a file without training (exit 0 or 2)")
    val.add_argument("file")
    val.add_argument("--set", action="append", metavar="KEY.PATH=VALUE")
    val.add_argument("--sweep", action="append", metavar="KEY.PATH=V1,V2")
    val.add_argument("--without-data", action="store_true",
                     help="check everything but the data files, a set read from files standing "
                          "in by its declared shapes and classes (e.g. a CIFAR or Flickr30K "
                          "file on a laptop)")
    val.set_defaults(func=cmd_validate)

    cmp_ = sub.add_parser("compare", help="the method table of runs/<name> (or of all of runs/)")
    cmp_.add_argument("dir")
    cmp_.add_argument("--format", choices=FORMATS, default="table")
    cmp_.add_argument("--metric", action="append", help="only this metric (repeatable)")
    cmp_.add_argument("--baseline", help="variant the differences are taken to")
    cmp_.add_argument("--rows", choices=DIMENSIONS, default="variant",
                      help="what the rows are (default variant)")
    cmp_.add_argument("--columns", choices=DIMENSIONS, default="metric",
                      help="what the columns are (default metric); e.g. --columns experiment: "
                           "the method x setting table of KD papers, variants matched by name")
    cmp_.add_argument("--ci", nargs="?", const=0.95, type=_fraction("--ci"), metavar="LEVEL",
                      help="show each cell's confidence interval (t-distribution over seeds; "
                           "default level 0.95) instead of its std")
    cmp_.add_argument("--paired", nargs="?", const=0.05, type=_fraction("--paired"),
                      metavar="ALPHA", help="test each difference to the baseline with a paired "
                                            "t-test over the shared seeds; mark those not "
                                            "significant at ALPHA (default 0.05)")
    cmp_.set_defaults(func=cmd_compare)

    rebuild = sub.add_parser("rebuild", help="make the results store of an output root again "
                                             "from its run folders' metrics.json files")
    rebuild.add_argument("out", nargs="?", default="runs")
    rebuild.set_defaults(func=cmd_rebuild)

    plot = sub.add_parser("plot", help="PNG figures of runs/<name>: validation curves, loss "
                                       "terms, accuracy matrices (the plots extra)")
    plot.add_argument("dir")
    plot.add_argument("--out", help="folder for the PNGs (default runs/<name>/plots)")
    plot.set_defaults(func=cmd_plot)

    report = sub.add_parser("report", help="one self-contained HTML page of runs/<name>: the "
                                           "table, the figures, each run's configuration")
    report.add_argument("dir")
    report.add_argument("--out", help="the HTML file (default runs/<name>/report.html)")
    report.set_defaults(func=cmd_report)

    lst = sub.add_parser("list", help="every registered objective, teacher role, network, dataset")
    lst.add_argument("--modules", metavar="NET", help="print NET's module paths and output "
                                                      "shapes instead (what `taps:` can name)")
    lst.add_argument("--input", help="one sample's shape for --modules (default 3x32x32)")
    lst.add_argument("--classes", type=int, help="classes for --modules (default 10)")
    lst.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="a network parameter for --modules, e.g. width=16 (repeatable)")
    lst.set_defaults(func=cmd_list)

    env = sub.add_parser("env", help="the environment (Python, packages, devices, checkout) of "
                                     "this install, or the one recorded in a run folder")
    env.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                     help="a run folder (runs/<name>/<variant>/seed<k>, runs/<name>/teacher)")
    env.add_argument("--constraints", nargs="?", const="-", metavar="FILE",
                     help="write its package versions as pip constraints (name==version) to "
                          "FILE (default: print them), for pip install -e '.[dev]' -c FILE")
    env.set_defaults(func=cmd_env)

    res = sub.add_parser("resume", help="continue the experiment in runs/<name>")
    res.add_argument("dir")
    res.set_defaults(func=cmd_resume)
    return p


USER_OS_ERRORS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
                  errno.EEXIST, errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG,
                  errno.ELOOP, errno.EFBIG}


STORE_TROUBLE = ("disk is full", "unable to open database file", "readonly database",
                 "disk I/O error", "locked")


def _os_error_line(e: OSError, args) -> str | None:
    """One line for an OSError on a path the user gave (or under it), or None for anything else."""
    if e.errno not in USER_OS_ERRORS:
        return None
    path = e.filename or getattr(args, "out", None) or getattr(args, "dir", None)
    reason = e.strerror or type(e).__name__
    return one_line(f"{shorten(str(path), 200)[1:-1]}: {reason.lower()}; check the path "
                    f"and its permissions" if path else f"{reason.lower()}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # usage errors (one line, see OneLineParser) and --help
        return e.code if isinstance(e.code, int) else 2
    from distill.environment import set_command
    set_command(sys.argv if argv is None else ["distill", *argv])  # recorded with each run
    # library warnings are held back while the command runs: a refusal prints its one line only,
    # anything else shows them at the end
    with warnings.catch_warnings(record=True) as held:
        code, line = None, None
        try:
            code = args.func(args)
        except UserError as e:
            held.clear()
            code, line = 2, str(e)
        except KeyboardInterrupt:
            code, line = 130, "interrupted; run the same command again to continue where it stopped"
        except OSError as e:
            line = _os_error_line(e, args)
            if line is None:
                _show(held)
                raise
            held.clear()
            code = 2
        except sqlite3.OperationalError as e:  # the results store's file system, not a bug
            if not any(p in str(e) for p in STORE_TROUBLE):
                _show(held)
                raise
            held.clear()
            store = Path(getattr(args, "out", None) or getattr(args, "dir", ".")) / "results.sqlite"
            code, line = 2, one_line(f"{store}: {e}; check the disk and the folder's permissions")
    _show(held)
    if line is not None:
        print(line, file=sys.stderr)
    return code


def _show(held) -> None:
    seen = set()
    for w in held:
        text = warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
        if text not in seen:
            seen.add(text)
            sys.stderr.write(text)
    held.clear()


if __name__ == "__main__":
    sys.exit(main())
