"""Random-teacher experiments as users run them: the CIFAR-10 file offers both networks of the
paper, BatchNorm is what sets the student off at alpha = 1e-10, a label-free run reports probes and
no classifier accuracy."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill.cli import main
from distill.config import load_experiment
from distill.engine.build import build_data, build_module, build_teacher
from dataset_files import write_cifar10

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"

TINY = """\
name: rt-tiny
seeds: [0]
data: {name: digits, batch_size: 64, labels: false}
teacher: {role: random}
student:
  net: {name: small_cnn, width: 8}
  init: {from: teacher, alpha: 1.0e-10}
train: {epochs: 2, optimizer: {name: adamw, lr: 1.0e-3, weight_decay: 0.0}}
objectives:
  - {name: dino, out_dim: 64, hidden: 32, bottleneck: 16}
evaluate:
  - {name: linear_probe, steps: 30}
  - {name: knn, k: 20}
"""
PROBES = {f"{kind}_{source}" for kind in ("probe", "knn")
          for source in ("student", "teacher", "raw")}


def test_the_cifar10_file_validates_with_resnet18_and_vgg11(tmp_path, capsys):
    write_cifar10(tmp_path)
    assert main(["validate", str(EXPERIMENTS / "random_teacher_cifar10.yaml"),
                 "--set", f"data.root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "resnet18, resnet18-independent-init, vgg11, vgg11-independent-init" in out


def test_at_alpha_1e_10_only_batchnorm_tells_the_student_from_the_teacher():
    """The student normalises with batch statistics, the frozen teacher with its initial running
    statistics: that difference is the training signal when both start with the same weights."""
    ef = load_experiment(str(EXPERIMENTS / "random_teacher_mnist1d.yaml"))
    gaps = {}
    for variant in ("local-init", "local-init-no-bn"):
        exp = ef.variants[variant]
        data = build_data(exp, 0)
        module = build_module(exp, data, build_teacher(exp, data, None))
        x = torch.stack([data.train_set[i][0] for i in range(64)])
        module.train()
        with torch.no_grad():
            gaps[variant] = (module.student(x).features - module.teacher(x).features).abs().max()
    assert gaps["local-init"] > 0.1
    assert gaps["local-init-no-bn"] < 1e-5


@pytest.mark.slow
def test_a_label_free_run_stores_probes_and_no_classifier_accuracy(tmp_path):
    f = tmp_path / "rt.yaml"
    f.write_text(TINY)
    out = tmp_path / "runs"
    run = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(f), "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((out / "rt-tiny" / "default" / "seed0" / "metrics.json").read_text())
    assert PROBES <= set(metrics) and "top1" not in metrics
    stored = {metric: value for metric, value in sqlite3.connect(out / "results.sqlite").execute(
        "select metric, value from results where experiment = 'rt-tiny'")}
    assert set(stored) == PROBES
    assert all(0 <= v <= 100 for v in stored.values())
    assert stored["probe_raw"] > 80  # digits are nearly linearly separable as pixels
