"""The comparison files of the README run end to end through the CLI (2 epochs, 1 seed): every
variant trains, nd's class-means are computed once and reused, trg's terms are logged one by
one, and the table has a row per variant."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from distill.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("file", ["compare_digits.yaml", "compare_mnist1d_lt.yaml"])
def test_a_compare_file_runs_end_to_end(tmp_path, capsys, file):
    path = ROOT / "experiments" / file
    spec = yaml.safe_load(path.read_text())
    out = tmp_path / "runs"
    args = ["run", str(path), "--out", str(out), "--seeds", "0",
            "--set", "train.epochs=2", "--set", "teacher.train.epochs=2"]
    assert main(args) == 0, capsys.readouterr().err
    log = capsys.readouterr().out
    assert log.count("class-means: computed") == 1 and log.count("class-means: reused") == 1, log

    exp_dir = out / spec["name"]
    for variant in spec["variants"]:
        metrics = json.loads((exp_dir / variant / "seed0" / "metrics.json").read_text())
        assert metrics["epochs"] == 2 and 0 <= metrics["top1"] <= 100
    with open(exp_dir / "trg" / "seed0" / "logs" / "metrics.csv") as f:
        columns = next(csv.reader(f))
    assert {"train/trg/edge", "train/trg/node", "train/trg/context"} <= set(columns)

    assert main(["compare", str(exp_dir), "--format", "md"]) == 0
    table = capsys.readouterr().out
    for variant in spec["variants"]:
        assert f"| {variant}" in table, table
