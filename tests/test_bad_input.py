"""Every user mistake gives one line ``FILE:LINE: key.path: message``, exit 2, and writes nothing."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from distill.cli import main
from students import build_network
from experiment_text import digits_pair

GOOD = digits_pair("bad-input", "  - {name: ce}\n  - {name: kd, temperature: 4}\n",
                   tail="variants:\n  ce-only: {objectives: [{name: ce}]}\n  kd: {}\n")


def run_cli(args, capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def check_one_line(tmp_path, capsys, text: str, line: int | None, key: str, words: list[str],
                   command: str = "run"):
    f = tmp_path / "exp.yaml"
    f.write_text(text)
    out = tmp_path / "runs"
    args = [command, str(f)] + (["--out", str(out)] if command == "run" else [])
    code, err = run_cli(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    where = f"{f}:{line}: " if line else f"{f}: "
    assert lines[0].startswith(where + key), lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    assert not out.exists(), "a bad file must not write anything"
    return lines[0]


def test_the_good_file_validates(tmp_path, capsys):
    f = tmp_path / "exp.yaml"
    f.write_text(GOOD)
    assert main(["validate", str(f)]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize("old,new,line,key,words", [
    ("student:\n", "studnt:\n", 8, "studnt", ["unknown key", "did you mean 'student'"]),
    ("{name: kd, temperature: 4}", "{name: kd, temprature: 4}", 13, "objectives.1.temprature",
     ["unknown key", "did you mean 'temperature'"]),
    ("train: {epochs: 1}\nobjectives", "train: {epochs: many}\nobjectives", 10, "train.epochs",
     ["integer"]),
    ("net: {name: mlp, hidden: [32]}", "net: {name: mlpp, hidden: [32]}", 9, "student.net.name",
     ["unknown network 'mlpp'", "did you mean 'mlp'", "distill list"]),
    ("net: {name: mlp, hidden: [32]}", "net: {name: mlp, hiden: [32]}", 9, "student.net.hiden",
     ["did you mean 'hidden'"]),
    ("role: frozen", "role: frozn", 5, "teacher.role", ["unknown teacher role 'frozn'"]),
    ("kd: {}", "kd: {train: {epochs: 0}}", 16, "variants.kd.train.epochs", ["greater than"]),
    ("seeds: [0]", "seeds: [0]\ntrainer: {max_epoch: 3}", 3, "trainer.max_epoch",
     ["not a Lightning Trainer argument"]),
    ("{name: digits, batch_size: 64}", "{name: cifar10, root: /nonexistent/cifar}", 3,
     "data.root", ["/nonexistent/cifar", "download: true"]),
    ("  train: {epochs: 1}\n", "  checkpoint: /nonexistent/teacher.pt\n", 7, "teacher.checkpoint",
     ["/nonexistent/teacher.pt", "does not exist"]),
])
def test_a_broken_key_names_file_line_and_key(tmp_path, capsys, old, new, line, key, words):
    assert old in GOOD
    check_one_line(tmp_path, capsys, GOOD.replace(old, new, 1), line, key, words)


def test_an_objective_that_needs_a_teacher_without_one(tmp_path, capsys):
    text = GOOD.replace("teacher:\n  role: frozen\n  net: {name: small_cnn, width: 8}\n"
                        "  train: {epochs: 1}\n", "")
    check_one_line(tmp_path, capsys, text, 9, "objectives.1", ["kd needs a teacher"])


def test_a_checkpoint_of_another_shape(tmp_path, capsys):
    wrong = build_network("small_cnn", {"width": 8}, num_classes=100, input_shape=(1, 8, 8))
    ckpt = tmp_path / "teacher.pt"
    torch.save({"state_dict": wrong.net.state_dict()}, ckpt)
    text = GOOD.replace("  train: {epochs: 1}\n", f"  checkpoint: {ckpt}\n", 1)
    check_one_line(tmp_path, capsys, text, 7, "teacher.checkpoint",
                   ["does not fit the teacher network", "fc.weight", "(100, 16)"])


def test_a_corrupted_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "teacher.pt"
    ckpt.write_bytes(b"not a torch file")
    text = GOOD.replace("  train: {epochs: 1}\n", f"  checkpoint: {ckpt}\n", 1)
    check_one_line(tmp_path, capsys, text, 7, "teacher.checkpoint", ["cannot be read"])


def test_a_checkpoint_is_never_unpickled(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    ckpt = tmp_path / "teacher.pt"
    torch.save({"state_dict": Evil()}, ckpt)
    text = GOOD.replace("  train: {epochs: 1}\n", f"  checkpoint: {ckpt}\n", 1)
    check_one_line(tmp_path, capsys, text, 7, "teacher.checkpoint", ["cannot be read"])
    assert not (tmp_path / "pwned").exists()


def test_malformed_yaml(tmp_path, capsys):
    check_one_line(tmp_path, capsys, GOOD.replace("{name: ce}", "{name: ce"), 13, "",
                   ["not valid YAML"])


def test_an_empty_file(tmp_path, capsys):
    check_one_line(tmp_path, capsys, "", None, "", ["empty"])


def test_a_file_that_is_not_a_mapping(tmp_path, capsys):
    check_one_line(tmp_path, capsys, "- just\n- a list\n", 1, "", ["mapping"])


def test_python_tags_are_refused_and_never_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    text = GOOD.replace("name: bad-input", f"name: !!python/object/apply:os.system "
                                           f"['touch {marker}']")
    check_one_line(tmp_path, capsys, text, 1, "", ["not valid YAML"])
    assert not marker.exists()


def test_a_missing_file(tmp_path, capsys):
    code, err = run_cli(["validate", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope.yaml" in err


def test_an_unknown_variant_on_the_command_line(tmp_path, capsys):
    f = tmp_path / "exp.yaml"
    f.write_text(GOOD)
    code, err = run_cli(["run", str(f), "--variant", "kdd", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "did you mean 'kd'" in err and not (tmp_path / "r").exists()


def test_a_bad_set_override_names_the_override(tmp_path, capsys):
    f = tmp_path / "exp.yaml"
    f.write_text(GOOD)
    code, err = run_cli(["validate", str(f), "--set", "train.epochs=-3"], capsys)
    assert code == 2
    assert re.match(r"--set train\.epochs=-3: train\.epochs: .*greater than", err.strip()), err


def test_a_failure_keeps_earlier_results(tmp_path, capsys):
    out = tmp_path / "runs"
    (out / "bad-input").mkdir(parents=True)
    (out / "results.sqlite").write_bytes(b"earlier")
    f = tmp_path / "exp.yaml"
    f.write_text(GOOD.replace("studnt", "student").replace("student:\n", "studnt:\n"))
    assert run_cli(["run", str(f), "--out", str(out)], capsys)[0] == 2
    assert (out / "results.sqlite").read_bytes() == b"earlier"
    assert list((out / "bad-input").iterdir()) == []
