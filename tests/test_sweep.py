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
    doc = json.loads(capsys.readouterr().out)
    rows = {r["variant"]: r for r in doc["sw"]["rows"]} if "sw" in doc else \
        {r["variant"]: r for r in doc["rows"]}
    means = {v: r["top1"]["mean"] for v, r in rows.items() if v.startswith("temperature_")}
    best = max(means.values())
    assert {v for v, r in rows.items() if r["top1"]["best"]} <= \
        {v for v, m in means.items() if m == best} | {"ce-only"}
    grid = doc["sw: the sweep"]
    assert grid["metrics"] == ["0.01", "0.05"]
    cells = [(r["variant"], c, r[c]) for r in grid["rows"] for c in grid["metrics"]]
    assert len(cells) == 8
    marked = [(v, c) for v, c, cell in cells if cell["best"]]
    assert len(marked) >= 1 and all(
        rows[f"temperature_{v.split(' = ')[1]}-lr_{c}"]["top1"]["mean"] == best
        for v, c in marked)
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
