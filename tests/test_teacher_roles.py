"""Teacher roles are told apart by their hooks: each says what the experiment file must give it
(``check``) and acts at task start (``on_task_start``); the runners never ask a role's name."""
from __future__ import annotations

import pytest

from distill.cli import main
from experiment_text import digits_pair

GOOD = digits_pair("roles", "  - {name: ce}\n  - {name: kd}\n")


@pytest.mark.parametrize("old,new,key,words", [
    ("  train: {epochs: 1}\nstudent", "student", "teacher", ["frozen teacher needs", "checkpoint"]),
    ("role: frozen", "role: random", "teacher.train", ["random teacher makes its own weights"]),
    ("role: frozen\n  net: {name: small_cnn, width: 8}",
     "role: ema\n  net: {name: small_cnn, width: 8}", "teacher.train",
     ["ema teacher makes its own weights"]),
    ("role: frozen\n  net: {name: small_cnn, width: 8}\n  train: {epochs: 1}",
     "role: random\n  net: {name: small_cnn, width: 8}\n  checkpoint: t.pt", "teacher.checkpoint",
     ["random teacher makes its own weights"]),
    ("role: frozen", "role: snapshot", "teacher.train", ["snapshot teacher makes its own"]),
])
def test_a_role_refuses_what_it_cannot_serve_in_one_line(tmp_path, capsys, old, new, key, words):
    assert old in GOOD
    f = tmp_path / "exp.yaml"
    f.write_text(GOOD.replace(old, new))
    assert main(["run", str(f), "--out", str(tmp_path / "runs")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{f}:" in lines[0] and f": {key}: " in lines[0], lines
    for w in words:
        assert w in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_snapshot_teacher_needs_a_task_sequence(tmp_path, capsys):
    f = tmp_path / "exp.yaml"
    f.write_text(GOOD.replace("role: frozen", "role: snapshot").replace("  train: {epochs: 1}\n", "")
                 .replace("  net: {name: small_cnn, width: 8}\n", ""))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "teacher.role: a snapshot teacher is the student at the end of the previous task" in err
    assert "continual" in err


def test_the_random_role_as_written_validates(tmp_path, capsys):
    f = tmp_path / "exp.yaml"
    f.write_text(GOOD.replace("role: frozen", "role: random").replace("  train: {epochs: 1}\n", ""))
    assert main(["validate", str(f)]) == 0, capsys.readouterr().err
