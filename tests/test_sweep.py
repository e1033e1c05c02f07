"""Sweeps (`sweep:` in a file, `--sweep key=v1,v2` on the command line): one variant per
combination, named after its values, validated like any variant; a 4 x 2 sweep runs as 8
variants, the table marks the best and prints the grid; and the refusals."""
from __future__ import annotations

import json

import pytest

from distill.cli import main
from distill.config.load import load_experiment
from distill.config.sweep import combinations, label_of

SWEPT = """\
name: sw
seeds: [0]
data: {name: digits, batch_size: 128}
teacher:
  role: frozen
  net: {name: mlp, hidden: [64]}
  train: {epochs: 2, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
student:
  net: {name: mlp, hidden: [32]}
train: {epochs: 1, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
objectives:
  - {name: ce}
  - {name: kd, temperature: 4}
variants:
  ce-only: {objectives: [{name: ce}]}
baseline: ce-only
sweep:
  objectives.1.temperature: [1, 2, 4, 8]
  train.optimizer.lr: [0.01, 0.05]
"""


def write(tmp_path, text=SWEPT):
    f = tmp_path / "sw.yaml"
    f.write_text(text)
    return f


def test_a_sweep_is_one_variant_per_combination_named_after_its_values(tmp_path):
    ef = load_experiment(str(write(tmp_path)))
    names = list(ef.variants)
    assert names[0] == "ce-only" and len(names) == 9
    assert names[1:3] == ["temperature_1-lr_0.01", "temperature_1-lr_0.05"]
    exp = ef.variants["temperature_8-lr_0.05"]
    assert exp.objectives[1].params()["temperature"] == 8
    assert exp.train.optimizer.params()["lr"] == 0.05
    assert ef.variants["ce-only"].objectives[0].name == "ce"  # the file's variants stay


def test_the_command_line_adds_and_replaces_sweep_keys(tmp_path):
    ef = load_experiment(str(write(tmp_path)), sweeps=["train.optimizer.lr=0.1",
                                                       "objectives.1.weight=0.5,2"])
    names = [n for n in ef.variants if n != "ce-only"]
    assert len(names) == 8 and names[0] == "temperature_1-lr_0.1-weight_0.5"
    assert ef.variants["temperature_2-lr_0.1-weight_2"].objectives[1].weight == 2


def test_keys_ending_alike_keep_more_of_their_path():
    keys = ["objectives.1.weight", "objectives.2.weight", "train.epochs"]
    assert [label_of(k, keys) for k in keys] == ["1.weight", "2.weight", "epochs"]
    assert [n for n, _ in combinations({"a.b": [True], "c": ["x"]})] == ["b_true-c_x"]


def test_a_4_by_2_sweep_runs_as_8_variants_and_the_table_marks_the_best(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", str(write(tmp_path)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    exp_dir = out / "sw"
    swept = [p.name for p in exp_dir.iterdir() if p.name.startswith("temperature_")]
    assert len(swept) == 8
    config = (exp_dir / "temperature_2-lr_0.01" / "seed0" / "config.yaml").read_text()
    assert "temperature: 2" in config and "lr: 0.01" in config and "sweep" not in config
    assert main(["compare", str(exp_dir), "--format", "json"]) == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    means = {v: r["top1"]["mean"] for v, r in rows.items() if v.startswith("temperature_")}
    best = max(means.values())
    assert {v for v, r in rows.items() if r["top1"]["best"]} == \
        {v for v, m in list(means.items()) + [("ce-only", rows["ce-only"]["top1"]["mean"])]
         if m == max(best, rows["ce-only"]["top1"]["mean"])}
    assert main(["compare", str(exp_dir), "--format", "md"]) == 0
    grid = capsys.readouterr().out.split("sw: the sweep")[1].splitlines()
    assert grid[2].startswith("| top1: temperature \\ lr | 0.01 ↑ | 0.05 ↑ |")
    cells = [line.split(" | ")[1:] for line in grid[4:8]]
    assert [line.split(" | ")[0] for line in grid[4:8]] == [
        f"| temperature = {t}" for t in (1, 2, 4, 8)]
    bold = [(t, lr) for t, row in zip((1, 2, 4, 8), cells)
            for lr, cell in zip(("0.01", "0.05"), row) if cell.startswith("**")]
    assert bold and all(means[f"temperature_{t}-lr_{lr}"] == best for t, lr in bold)
    assert "the sweep" in printed and "temperature \\ lr" in printed


def test_resume_keeps_the_command_line_sweep(tmp_path):
    out = tmp_path / "runs"
    f = write(tmp_path, SWEPT.replace("sweep:\n  objectives.1.temperature: [1, 2, 4, 8]\n"
                                      "  train.optimizer.lr: [0.01, 0.05]\n", ""))
    assert main(["run", str(f), "--out", str(out), "--sweep", "objectives.1.temperature=1,3"]) == 0
    kept = json.loads((out / "sw" / "source.json").read_text())
    assert kept["sweeps"] == ["objectives.1.temperature=1,3"]
    assert main(["resume", str(out / "sw")]) == 0
    assert (out / "sw" / "temperature_3" / "seed0" / "metrics.json").is_file()


@pytest.mark.parametrize("args,change,words", [
    (["--sweep", "objectives.5.temperature=1,2"], None, ["objectives.5", "index below 2"]),
    (["--sweep", "objectives.1.temperature=a/b"], None, ["cannot be a variant name"]),
    (["--sweep", "objectives.1.temperature=1,1"], None, ["listed twice"]),
    (["--sweep", "train.epochs=" + ",".join(map(str, range(1, 40)))], None, ["at most 256"]),
    (["--sweep", "train.optimizer.lr=-1"], None, ["temperature_1-lr_-1", "lr"]),
    (["--sweep", "variants.x=1"], None, ["cannot be swept"]),
    (["--sweep", "nothing"], None, ["key.path=value1,value2"]),
    ([], ("  train.optimizer.lr: [0.01, 0.05]\n", "  train.optimizer.lr: [{a: 1}]\n"),
     ["sweep"]),
    ([], ("  ce-only: {objectives: [{name: ce}]}\n",
          "  ce-only: {objectives: [{name: ce}]}\n  temperature_1-lr_0.01: {}\n"),
     ["also a variant"]),
])
def test_a_bad_sweep_is_one_line(tmp_path, capsys, args, change, words):
    text = SWEPT.replace(*change) if change else SWEPT
    assert main(["validate", str(write(tmp_path, text)), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


@pytest.mark.parametrize("args,words", [
    (["--sweep", "objectives.1.temperature=4,4.0"], ["listed twice"]),
    (["--sweep", "train.optimizer.lr=0.1,'0.1'"], ["same variant", "lr_0.1"]),
    (["--sweep", "train.optimzer.lr=0.1"], ["--sweep train.optimzer.lr=0.1", "optimzer"]),
])
def test_sweep_values_that_collide_and_command_line_mistakes_are_one_line(tmp_path, capsys,
                                                                          args, words):
    text = SWEPT.replace("sweep:\n  objectives.1.temperature: [1, 2, 4, 8]\n"
                         "  train.optimizer.lr: [0.01, 0.05]\n", "")
    assert main(["validate", str(write(tmp_path, text)), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_a_sweep_inside_a_variant_is_refused(tmp_path, capsys):
    text = SWEPT.replace("  ce-only: {objectives: [{name: ce}]}\n",
                         "  ce-only: {objectives: [{name: ce}], sweep: {train.epochs: [1, 2]}}\n")
    assert main(["validate", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err.strip()
    assert "variants.ce-only.sweep" in err and "top of the file" in err, err


def test_the_grid_is_left_out_of_csv_and_json(tmp_path, capsys):
    out = tmp_path / "runs"
    text = SWEPT.replace("[1, 2, 4, 8]", "[1, 2]")
    assert main(["run", str(write(tmp_path, text)), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["compare", str(out / "sw"), "--format", "json"]) == 0
    assert "rows" in json.loads(capsys.readouterr().out)  # one table, not one per name
    assert main(["compare", str(out / "sw"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len({len(line.split(",")) for line in lines}) == 1
    assert main(["compare", str(out / "sw"), "--format", "md"]) == 0
    assert "temperature \\ lr" in capsys.readouterr().out
