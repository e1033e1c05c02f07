"""Every shipped experiment file validates; the CIFAR ones against tiny data sets written here in
the real format, and one of them trains end to end (--fast) on that data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dataset_files import write_cifar10, write_cifar100, write_karpathy
from distill.cli import main

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "experiments").glob("*.yaml"))
WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100,
           "flickr30k": lambda root: write_karpathy(root, images=24, per_image=5)}


def data_overrides(path: Path, tmp_path: Path) -> list[str]:
    """--set data.root=<tiny copy> for files that read a local data set."""
    name = yaml.safe_load(path.read_text())["data"]["name"]
    if name not in WRITERS:
        return []
    WRITERS[name](tmp_path)
    small = ["--set", "data.image_size=32"] if name == "flickr30k" else []
    return ["--set", f"data.root={tmp_path}", "--set", "data.num_workers=0", *small]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_experiment_file_validates(path, tmp_path, capsys):
    assert main(["validate", str(path)] + data_overrides(path, tmp_path)) == 0, \
        capsys.readouterr().err


def test_the_cifar_protocol_file_trains_on_real_format_files(tmp_path, capsys):
    path = ROOT / "experiments" / "cifar100_resnet32x4_resnet8x4.yaml"
    out = tmp_path / "runs"
    args = ["run", str(path), "--fast", "--seeds", "0", "--variant", "kd", "--out", str(out),
            "--set", "data.batch_size=8", "--set", "threads=1"]
    assert main(args + data_overrides(path, tmp_path)) == 0, capsys.readouterr().err
    metrics = json.loads((out / "_fast" / "cifar100-resnet32x4-resnet8x4" / "kd" / "seed0" /
                          "metrics.json").read_text())
    assert 0 <= metrics["top1"] <= 100 and metrics["epochs"] == 1


@pytest.mark.slow
def test_every_baseline_of_the_anchor_table_trains_on_real_format_files(tmp_path, capsys):
    path = ROOT / "experiments" / "cifar100_baselines.yaml"
    out = tmp_path / "runs"
    args = ["run", str(path), "--fast", "--seeds", "0", "--out", str(out),
            "--set", "data.batch_size=8", "--set", "threads=1"]
    assert main(args + data_overrides(path, tmp_path)) == 0, capsys.readouterr().err
    folder = out / "_fast" / "cifar100-baselines"
    for variant in ("ce-only", "kd", "fitnet", "at", "rkd", "crd", "dkd", "kd++", "mutual",
                    "ensemble"):
        metrics = json.loads((folder / variant / "seed0" / "metrics.json").read_text())
        assert 0 <= metrics["top1"] <= 100, variant
        if variant in ("mutual", "ensemble"):  # its teacher's accuracy, a row of its own
            assert 0 <= metrics["teacher_metrics"]["top1"] <= 100, variant
    stages = [p.name for p in folder.iterdir() if p.name.startswith("teacher")]
    assert len(stages) == 3  # the frozen teacher is the ensemble's first member


@pytest.mark.slow
@pytest.mark.parametrize("file", ["baselines_mnist1d.yaml", "baselines_digits.yaml"])
def test_every_baseline_of_the_measured_tables_trains(tmp_path, capsys, file):
    path = ROOT / "experiments" / file
    out = tmp_path / "runs"
    assert main(["run", str(path), "--fast", "--seeds", "0", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    folder = next(p for p in (out / "_fast").iterdir() if p.is_dir())
    for variant in ("ce-only", "kd", "fitnet", "at", "rkd", "crd", "dkd", "kd++", "mutual",
                    "ensemble"):
        metrics = json.loads((folder / variant / "seed0" / "metrics.json").read_text())
        assert 0 <= metrics["top1"] <= 100, variant
    capsys.readouterr()
    assert main(["compare", str(folder), "--format", "csv"]) == 0
    rows = [line.split(",")[:2] for line in capsys.readouterr().out.splitlines()[1:]]
    assert [r for r in rows if r[1] == "reference"][0][0] == "teacher"
    assert len([r for r in rows if r[1] == "reference"]) == 3  # the ensemble's other members
    assert ["ensemble:teacher", ""] in rows and ["mutual:teacher", ""] in rows
