"""What produced a run: Python, the package versions, the torch build and the CPU instructions its
kernels use, the devices, threads and determinism, the workbench's version and checkout, the
command and the configuration's hash.
Written once per run folder (``environment.json``) when the run starts; a run resumed in another
environment adds that one under ``resumed``. Reading never fails: a missing, damaged or foreign
file is an unknown environment."""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from distill.atomic_write import atomic_write_text

FILE = "environment.json"
MAX_BYTES = 1 << 20  # a record is a few kB
PROJECT = "distill-workbench"
# always recorded (distribution names, as pip knows them); with the project's own requirements
PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "numpy")
OPTIONAL = ("transformers", "sentencepiece")  # recorded when installed (the text extra)


_command: list[str] | None = None  # the command line being run (set by the CLI)


def set_command(command: list[str]) -> None:
    global _command
    _command = list(command)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _requirement_names() -> list[str]:
    """The project's own runtime requirements (its extras left out)."""
    try:
        requires = metadata.requires(PROJECT) or []
    except metadata.PackageNotFoundError:
        return []
    names = []
    for line in requires:
        if "extra ==" in line:
            continue
        name = line.split(";")[0].strip()
        for stop in "<>=!~[ ":
            name = name.split(stop)[0]
        names.append(name.lower())
    return names


def packages() -> dict[str, str]:
    """Installed versions of the recorded distributions, by name."""
    names = list(PACKAGES) + [n for n in _requirement_names() if n not in PACKAGES]
    names += list(OPTIONAL)
    return {name: version for name in names if (version := _version(name)) is not None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _devices(torch) -> list[str]:
    devices = []
    try:
        if torch.cuda.is_available():
            devices = [f"cuda:{i} {torch.cuda.get_device_name(i)}"
                       for i in range(torch.cuda.device_count())]
    except Exception:  # a broken driver: the CPU is still a device
        pass
    return devices + [f"cpu {_cpu_model()}"]


CODE = ("distill", "teachers", "students", "pyproject.toml")  # what "dirty" looks at


def checkout() -> dict:
    """The workbench's version, and its git commit and whether its code (:data:`CODE`) has
    uncommitted changes, when it runs from a checkout (an editable install): an edited README or
    experiment file (its configuration is hashed apart) does not make a run dirty."""
    out = {"version": _version(PROJECT), "commit": None, "dirty": None}
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return out
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10, check=True).stdout.strip()
        out["commit"] = git("rev-parse", "HEAD") or None
        out["dirty"] = bool(git("status", "--porcelain", "--untracked-files=no", "--", *CODE))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def current(config_text: str | None = None, command: list[str] | None = None) -> dict:
    """This process's environment (``config_text``: the run's resolved configuration, hashed)."""
    import torch

    cudnn = None
    try:
        if torch.backends.cudnn.is_available():
            cudnn = torch.backends.cudnn.version()
    except Exception:
        pass
    record = {
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages(),
        "torch": {"version": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn,
                  "cudnn_benchmark": torch.backends.cudnn.benchmark,
                  # the vector instructions torch's CPU kernels use here (AVX512, AVX2, ...):
                  # with the same versions, another set computes other floats
                  "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "devices": _devices(torch),
        "threads": torch.get_num_threads(),
        "deterministic": ("warn" if torch.is_deterministic_algorithms_warn_only_enabled()
                          and torch.are_deterministic_algorithms_enabled()
                          else torch.are_deterministic_algorithms_enabled()),
        "workbench": checkout(),
        "command": list(command if command is not None else _command or sys.argv),
    }
    if config_text is not None:
        record["config_sha256"] = hashlib.sha256(config_text.encode()).hexdigest()
    return record


def _scalar(value) -> object:
    """A value as a note can show it: strings, booleans, integers and finite floats as they are,
    anything else (a foreign record's lists, NaN) as short text."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return repr(value)[:80]


def _part(record: dict, key: str) -> dict:
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def _one(record: dict) -> dict[str, object]:
    out: dict[str, object] = {"python": _scalar(record.get("python"))}
    out.update((str(k), _scalar(v)) for k, v in _part(record, "packages").items())
    build = _part(record, "torch")
    out.update(torch=_scalar(build.get("version", out.get("torch"))),
               cuda=_scalar(build.get("cuda")), cudnn=_scalar(build.get("cudnn")),
               cpu_capability=_scalar(build.get("cpu_capability")))
    devices = record.get("devices")
    for i, device in enumerate(devices if isinstance(devices, list) else [devices]):
        out[f"device {i}"] = _scalar(device)
    out.update(threads=_scalar(record.get("threads")),
               deterministic=_scalar(record.get("deterministic")))
    workbench = _part(record, "workbench")
    out.update(workbench=_scalar(workbench.get("version")),
               commit=_scalar(workbench.get("commit")), dirty=_scalar(workbench.get("dirty")))
    return out


def flat(record: dict) -> dict[str, object]:
    """The parts of a record that can change a number, as one level: ``torch`` (its build
    version, e.g. 2.14.1+cu130), ``python``, each package, ``cuda``, ``cpu_capability``,
    ``device 0``, ``threads``, ``commit``, ``dirty``..., and ``start``: "recorded", or unknown
    when the record was first written at a resumption. A value that changed when the run was
    resumed reads ``old -> new``."""
    out = _one(record)
    out["start"] = ("unknown (recorded when resumed)" if record.get("recorded_on_resume")
                    else "recorded")
    later = record.get("resumed")
    for resumed in later if isinstance(later, list) else []:
        if isinstance(resumed, dict):
            for key, value in _one(resumed).items():
                if out.get(key) != value and not str(out.get(key)).endswith(f"-> {value}"):
                    out[key] = f"{out.get(key)} -> {value}"
    return out


def differences(old: dict, new: dict) -> list[str]:
    """``name old -> new`` for each value that can change a number and differs."""
    a, b = _one(old), _one(new)
    return [f"{key} {a.get(key)} -> {b.get(key)}" for key in list(a) + [k for k in b if k not in a]
            if a.get(key) != b.get(key)]


def read(run_dir: Path) -> dict | None:
    """The record of ``run_dir`` (its first environment), or None when missing, unreadable, not a
    regular file (a pipe would block) or over 1 MB."""
    path = Path(run_dir) / FILE
    try:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("packages"), dict):
        return None
    return record


def record_start(run_dir: Path, config_text: str, say=print, label: str = "",
                 resuming: bool = False) -> dict:
    """At the start (or resumption: ``resuming``) of a run: write the record when there is none
    (marked ``recorded_on_resume`` when the run started without one); when the run was started in
    another environment, say so in one line and add this one under ``resumed``. Returns the
    record as written."""
    now = current(config_text)
    path = Path(run_dir) / FILE
    first = read(run_dir)
    if first is None:
        if resuming:
            now["recorded_on_resume"] = True
        atomic_write_text(path, json.dumps(now, indent=2) + "\n")
        return now
    later = first.get("resumed")
    if not isinstance(later, list) or not all(isinstance(r, dict) for r in later):
        first["resumed"] = later = []
    changed = differences(later[-1] if later else first, now)
    if changed:
        later.append(now)
        atomic_write_text(path, json.dumps(first, indent=2) + "\n")
        shown = "; ".join(changed[:3]) + ("; ..." if len(changed) > 3 else "")
        say(f"{label + ': ' if label else ''}resumed in another environment than it started in "
            f"({shown}); both are in {path}")
    return first


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a distribution's name (PEP 508)
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")  # a version, no spaces or options


def constraints(record: dict) -> str:
    """pip constraints (``name==version``, one a line) of the record's packages; an entry that is
    not a plain name and version (a damaged or foreign record) is left out, so the file never
    carries pip options."""
    return "".join(f"{name}=={version}\n"
                   for name, version in sorted((record.get("packages") or {}).items(),
                                               key=lambda item: str(item[0]))
                   if isinstance(name, str) and isinstance(version, str)
                   and NAME.match(name) and VERSION.match(version))
