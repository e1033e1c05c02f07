"""The quickstart end to end, as a new user runs it: kd's student beats ce-only's over 3 seeds."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_kd_beats_ce_only_and_compare_reprints_the_table(tmp_path):
    out = tmp_path / "runs"
    cli = [sys.executable, "-m", "distill.cli"]
    run = subprocess.run(cli + ["run", str(ROOT / "experiments" / "quickstart.yaml"), "--out",
                                str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    top1 = {v: [json.loads((out / "quickstart" / v / f"seed{s}" / "metrics.json").read_text())
                ["top1"] for s in (0, 1, 2)] for v in ("ce-only", "kd")}
    assert statistics.mean(top1["kd"]) > statistics.mean(top1["ce-only"]) + 2.0, top1
    assert "teacher (reference)" in run.stdout and "kd" in run.stdout

    md = subprocess.run(cli + ["compare", str(out / "quickstart"), "--format", "md"],
                        capture_output=True, text=True, timeout=120)
    assert md.returncode == 0, md.stderr
    kd_row = next(line for line in md.stdout.splitlines() if line.startswith("| kd"))
    assert f"{statistics.mean(top1['kd']):.2f}" in kd_row
