"""Every run folder records what produced it; compare notes tables that mix environments;
distill env prints and pins one."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import torch

from distill.cli import main
from distill.environment import FILE, constraints, current, differences, read
from experiment_text import digits_pair

PAIR = digits_pair("env", "  - {name: ce}\n  - {name: kd, temperature: 4}\n",
                   tail="variants:\n  ce-only: {objectives: [{name: ce}]}\n  kd: {}\n")
CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished experiment (teacher stage, ce-only and kd, seed 0), copied by each test."""
    root = tmp_path_factory.mktemp("env")
    (root / "env.yaml").write_text(PAIR)
    assert main(["run", str(root / "env.yaml"), "--out", str(root / "runs")]) == 0
    return root


@pytest.fixture
def runs(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "copy")
    return tmp_path / "copy"


def edit(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def older_torch(record: dict) -> None:
    record["packages"]["torch"] = "2.0.0"
    record["torch"]["version"] = "2.0.0+cpu"


def test_the_current_environment_names_torch_and_the_checkout():
    record = current()
    assert record["packages"]["torch"] == metadata.version("torch")
    assert record["torch"]["version"] == torch.__version__
    assert record["python"].count(".") == 2 and record["threads"] == torch.get_num_threads()
    # the CPU instructions its kernels use: other floats on another set, the same versions
    assert record["torch"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    if (CHECKOUT / ".git").exists():
        head = subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        assert record["workbench"]["commit"] == head
        assert isinstance(record["workbench"]["dirty"], bool)


def test_each_run_folder_records_its_environment_when_it_starts(runs):
    for folder in ("teacher", "ce-only/seed0", "kd/seed0"):
        run = runs / "runs" / "env" / folder
        record = json.loads((run / FILE).read_text())
        assert record["packages"]["torch"] == metadata.version("torch")
        assert record["torch"]["version"] == torch.__version__
        assert record["config_sha256"] == hashlib.sha256(
            (run / "config.yaml").read_bytes()).hexdigest()
        assert record["command"] == ["distill", "run", str(runs.parent.parent / "env0" /
                                                           "env.yaml"), "--out",
                                     str(runs.parent.parent / "env0" / "runs")]
        assert record["threads"] == 1 and record["deterministic"] is True
        if (CHECKOUT / ".git").exists():
            assert len(record["workbench"]["commit"]) == 40


def test_a_run_resumed_in_another_environment_says_so_and_keeps_both(runs, capsys):
    run = runs / "runs" / "env" / "kd" / "seed0"
    edit(run / FILE, older_torch)
    (run / "metrics.json").unlink()  # it resumes from its last checkpoint
    assert main(["run", str(runs / "env.yaml"), "--out", str(runs / "runs")]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "another environment" in l]
    assert len(lines) == 1 and "torch 2.0.0+cpu -> " + torch.__version__ in lines[0], lines
    record = json.loads((run / FILE).read_text())
    assert record["torch"]["version"] == "2.0.0+cpu"
    assert [r["torch"]["version"] for r in record["resumed"]] == [torch.__version__]
    # resumed again in the same environment (a stage's: its threads and deterministic mode):
    # nothing more is added
    (run / "metrics.json").unlink()
    assert main(["run", str(runs / "env.yaml"), "--out", str(runs / "runs")]) == 0
    assert len(json.loads((run / FILE).read_text())["resumed"]) == 1
    # the table names the row as run under both
    assert main(["compare", str(runs / "runs" / "env"), "--format", "md"]) == 0
    assert f"against 2.0.0+cpu -> {torch.__version__} (kd seed 0)" in capsys.readouterr().out


def test_a_run_first_recorded_when_resumed_is_marked_so(runs, capsys):
    run = runs / "runs" / "env" / "kd" / "seed0"
    (run / FILE).unlink()  # a run started before records were kept
    (run / "metrics.json").unlink()
    assert main(["run", str(runs / "env.yaml"), "--out", str(runs / "runs")]) == 0
    assert json.loads((run / FILE).read_text())["recorded_on_resume"] is True
    capsys.readouterr()
    assert main(["compare", str(runs / "runs" / "env"), "--format", "md"]) == 0
    assert "start recorded (teacher; ce-only seed 0) against unknown (recorded when resumed) " \
           "(kd seed 0)" in capsys.readouterr().out


def test_compare_notes_rows_of_two_environments_and_json_holds_both(runs, capsys):
    folder = runs / "runs" / "env"
    assert main(["compare", str(folder), "--format", "md"]) == 0
    assert "environments" not in capsys.readouterr().out  # one environment: no note
    edit(folder / "kd" / "seed0" / FILE, older_torch)
    assert main(["compare", str(folder), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "Rows come from different environments: torch " in out
    assert "2.0.0+cpu (kd seed 0)" in out and f"{torch.__version__} (teacher; ce-only seed 0)" in out
    assert main(["compare", str(folder), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    versions = {row["variant"]: row["environments"]["0"]["torch"] for row in document["rows"]}
    assert versions == {"teacher": torch.__version__, "ce-only": torch.__version__,
                        "kd": "2.0.0+cpu"}
    assert "kd seed 0" in document["environment_note"]


def test_missing_truncated_or_foreign_records_are_unknown_not_a_traceback(runs, capsys):
    folder = runs / "runs" / "env"
    (folder / "teacher" / FILE).unlink()
    (folder / "ce-only" / "seed0" / FILE).write_text('{"python": "3.1')  # truncated
    os.unlink(folder / "kd" / "seed0" / FILE)
    os.mkfifo(folder / "kd" / "seed0" / FILE)  # would block a reader
    assert main(["compare", str(folder), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert all(row["environments"]["0"] is None for row in document["rows"])
    assert "Environment unknown" in document["environment_note"]
    (folder / "kd" / "seed0" / FILE).unlink()
    (folder / "kd" / "seed0" / FILE).write_text('["not", "a", "record"]')  # foreign
    assert read(folder / "kd" / "seed0") is None
    (folder / "kd" / "seed0" / FILE).write_text(json.dumps(current()))  # one known, two unknown
    assert main(["compare", str(folder), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "Environment of some rows unknown: no record, environment unknown (teacher; " \
           "ce-only seed 0)" in out
    # fields of the wrong type or NaN are shown as text, never a traceback
    (folder / "kd" / "seed0" / FILE).write_text(
        '{"packages": {"torch": NaN}, "torch": "2.1", "workbench": [1], "devices": "cpu", '
        '"threads": Infinity}')
    assert main(["compare", str(folder), "--format", "md"]) == 0
    assert "Environment of some rows unknown" in capsys.readouterr().out
    assert main(["compare", str(folder), "--format", "json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["rows"] if r["variant"] == "kd")
    assert row["environments"]["0"]["torch"] == "nan"
    assert row["environments"]["0"]["threads"] == "inf"
    assert row["environments"]["0"]["device 0"] == "cpu"


def test_env_writes_the_runs_package_versions_as_pip_constraints(runs, capsys, tmp_path):
    run = runs / "runs" / "env" / "kd" / "seed0"
    record = json.loads((run / FILE).read_text())
    out = tmp_path / "constraints.txt"
    assert main(["env", str(run), "--constraints", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines == sorted(f"{name}=={version}" for name, version in record["packages"].items())
    assert f"torch=={metadata.version('torch')}" in lines
    capsys.readouterr()
    assert main(["env", str(run)]) == 0
    assert json.loads(capsys.readouterr().out) == record
    # a foreign record cannot smuggle pip options into the file
    foreign = {"packages": {"--index-url http://example.com": "1", "torch": "2.0 --pre",
                            "numpy": "1.26.4"}}
    assert constraints(foreign) == "numpy==1.26.4\n"


def test_env_prints_this_installs_environment(capsys):
    assert main(["env"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["packages"]["torch"] == metadata.version("torch")
    assert record["command"] == ["distill", "env"]
    assert main(["env", "--constraints"]) == 0
    assert f"torch=={metadata.version('torch')}\n" in capsys.readouterr().out


def test_env_of_a_folder_without_a_record_is_one_line(runs, capsys):
    assert main(["env", str(runs / "runs" / "env")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "<variant>/seed<k>" in err[0], err
    assert main(["env", str(runs / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_dirty_means_uncommitted_changes_to_the_workbenchs_code(tmp_path, monkeypatch):
    import distill.environment as environment

    repo = tmp_path / "checkout"
    (repo / "distill").mkdir(parents=True)
    (repo / "distill" / "environment.py").write_text("x = 1\n")
    (repo / "README.md").write_text("read me\n")

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.setattr(environment, "__file__", str(repo / "distill" / "environment.py"))
    assert environment.checkout()["dirty"] is False
    (repo / "README.md").write_text("edited\n")  # documentation: not the code that ran
    assert environment.checkout()["dirty"] is False
    (repo / "distill" / "environment.py").write_text("x = 2\n")
    assert environment.checkout()["dirty"] is True


def test_differences_name_each_changed_value():
    a = current()
    b = json.loads(json.dumps(a))
    older_torch(b)
    b["workbench"]["commit"] = "0" * 40
    b["torch"]["cpu_capability"] = "DEFAULT" if a["torch"]["cpu_capability"] != "DEFAULT" else "AVX2"
    changed = differences(a, b)
    assert any(c.startswith("torch ") for c in changed)
    assert any(c.startswith("cpu_capability ") for c in changed)
    assert any(c.startswith("commit ") for c in changed) and len(changed) == 3
