"""``distill plan``: one self-contained command per teacher stage and per variant x seed; run one
by one in any order after the teachers (as a job array would), then ``rebuild`` and ``compare``,
they give the table of one ``distill run``."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from distill.cli import main
from experiment_text import digits_pair

PAIR = digits_pair("pair", "  - {name: ce}\n  - {name: kd, temperature: 4}\n", seeds="[0, 1]",
                   tail="variants:\n  ce-only: {objectives: [{name: ce}]}\n  kd: {}\n")


def plan(capsys, *args) -> list[str]:
    assert main(["plan", *map(str, args)]) == 0
    return capsys.readouterr().out.splitlines()


def test_the_plan_is_the_teacher_job_then_one_job_per_variant_and_seed(tmp_path, capsys):
    f = tmp_path / "pair.yaml"
    f.write_text(PAIR)
    out = tmp_path / "runs"
    lines = plan(capsys, f, "--out", out, "--set", "train.epochs=2", "--seeds", "0,1")
    commands = [line for line in lines if not line.startswith("#")]
    assert len(commands) == 1 + 4 + 2
    words = [shlex.split(c) for c in commands]
    assert all(w[:3] == ["cd", str(tmp_path.cwd()), "&&"] for w in words)
    assert words[0][3] == sys.executable and words[0][-3:] == ["--seeds", "0,1",
                                                               "--teachers-only"]
    grid = words[1:5]
    assert [(w[w.index("--variant") + 1], w[w.index("--seeds") + 1]) for w in grid] == [
        ("ce-only", "0"), ("ce-only", "1"), ("kd", "0"), ("kd", "1")]
    for w in words[:5]:
        assert w[w.index("run") + 1] == str(f.resolve()) and w[w.index("--out") + 1] == str(out)
        assert w[w.index("--set") + 1] == "train.epochs=2"
    assert words[5][-2:] == ["rebuild", str(out)] and words[6][-2:] == ["compare",
                                                                       str(out / "pair")]
    only_grid = plan(capsys, f, "--out", out, "--set", "train.epochs=2", "--seeds", "0,1",
                     "--stage", "grid")
    assert only_grid == commands[1:5]
    assert plan(capsys, f, "--out", out, "--set", "train.epochs=2", "--seeds", "0,1",
                "--stage", "teachers") == commands[:1]


def test_a_file_without_a_teacher_stage_plans_the_grid_alone(tmp_path, capsys):
    f = tmp_path / "solo.yaml"
    f.write_text(PAIR.replace("teacher:\n  role: frozen\n  net: {name: small_cnn, width: 8}\n"
                              "  train: {epochs: 1}\n", "")
                 .replace("  - {name: kd, temperature: 4}\n", "")
                 .replace("  kd: {}\n", "  wider: {student: {net: {name: mlp, hidden: [64]}}}\n"))
    assert plan(capsys, f, "--stage", "teachers") == []  # no empty task for an array
    assert len(plan(capsys, f, "--stage", "grid")) == 4


def test_a_plan_of_some_variants_trains_only_their_teachers(tmp_path, capsys):
    f = tmp_path / "pair.yaml"
    f.write_text(PAIR)
    teacher = shlex.split(plan(capsys, f, "--variant", "kd", "--stage", "teachers")[0])
    assert teacher[-3:] == ["--variant", "kd", "--teachers-only"]
    assert len(plan(capsys, f, "--variant", "kd", "--stage", "grid")) == 2


def test_a_bad_file_is_refused_before_any_command_is_printed(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(PAIR.replace("temperature: 4", "temperature: -4"))
    assert main(["plan", str(f)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "temperature" in captured.err


@pytest.mark.slow
def test_the_plans_jobs_run_apart_give_the_table_of_one_run(tmp_path, capsys):
    f = tmp_path / "pair.yaml"
    f.write_text(PAIR)
    out = tmp_path / "jobs"
    commands = [c for c in plan(capsys, f, "--out", out, "--seeds", "1")
                if not c.startswith("#")]
    teachers, grid, after = commands[:1], commands[1:3], commands[3:]
    for command in teachers + grid[::-1]:  # the array's tasks in any order, after the teacher
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        if command in teachers:
            assert (out / "pair" / "teacher" / "teacher.pt").exists()
            assert not (out / "pair" / "kd").exists()  # the teachers alone
    (out / "results.sqlite").unlink()  # as if several machines had written it: made again
    for command in after:
        assert subprocess.run(command, shell=True, capture_output=True, text=True,
                              timeout=600).returncode == 0
    assert main(["run", str(f), "--out", str(tmp_path / "one"), "--seeds", "1"]) == 0
    capsys.readouterr()
    tables = []
    for root in (out, tmp_path / "one"):
        assert main(["compare", str(root / "pair"), "--format", "json"]) == 0
        tables.append(json.loads(capsys.readouterr().out))
    assert tables[0] == tables[1]


def test_a_value_with_a_line_break_is_refused_since_each_command_is_one_line(tmp_path, capsys):
    f = tmp_path / "pair.yaml"
    f.write_text(PAIR)
    assert main(["plan", str(f), "--out", str(tmp_path / "a\nb")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--out" in captured.err and "line break" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_teachers_only_is_one_process(tmp_path, capsys):
    f = tmp_path / "pair.yaml"
    f.write_text(PAIR)
    assert main(["run", str(f), "--teachers-only", "--jobs", "2", "--out",
                 str(tmp_path / "r")]) == 2
    assert "--teachers-only" in capsys.readouterr().err
