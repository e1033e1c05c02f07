"""The switches that change how a run computes, not what: channels_last, compile and Lightning's
bf16-mixed precision, each from the experiment file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dataset_files import write_cifar10
from experiment_text import digits_pair

from distill.config import load_experiment
from distill.engine.stage import RunPlan, fit, resolved_config


def cifar_run(root: Path, lines: str = "") -> str:
    return f"""\
name: fast
seeds: [0]
data: {{name: cifar10, root: {root}, batch_size: 16}}
teacher:
  role: random
  net: {{name: small_cnn, width: 4}}
student:
  net: {{name: small_cnn, width: 4}}
train: {{epochs: 2, optimizer: {{name: sgd, lr: 0.05, momentum: 0.9}}}}
objectives:
  - {{name: ce}}
  - {{name: kd}}
{lines}"""


def trained(tmp_path: Path, text: str, name: str):
    f = tmp_path / f"{name}.yaml"
    f.write_text(text)
    exp = load_experiment(f).variants["default"]
    run_dir = tmp_path / name
    metrics, module = fit(exp, 0, run_dir, name, RunPlan(interactive=False), say=lambda _: None)
    return exp, metrics, module, run_dir


def losses(run_dir: Path) -> list[float]:
    rows = (run_dir / "logs" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    at = header.index("train/loss")
    return [float(r.split(",")[at]) for r in rows[1:] if r.split(",")[at]]


def test_channels_last_runs_convolutions_on_nhwc_batches_with_the_same_numbers(tmp_path):
    write_cifar10(tmp_path / "data", n=16)
    seen = []
    exp, _, module, nhwc = trained(tmp_path, cifar_run(tmp_path / "data", "channels_last: true\n"),
                                   "nhwc")
    assert exp.channels_last and "channels_last: true" in resolved_config(exp, 0)
    conv = module.student.net.stem[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    teacher_conv = module.teacher.network.net.stem[0]
    assert teacher_conv.weight.is_contiguous(memory_format=torch.channels_last)
    data = module.trainer.datamodule
    batch = data.on_after_batch_transfer(next(iter(data.val_dataloader())), 0)
    assert batch[0].is_contiguous(memory_format=torch.channels_last)
    x, _ = next(data.epoch_inputs(0, "cpu"))
    assert x.is_contiguous(memory_format=torch.channels_last)
    _, _, plain_module, nchw = trained(tmp_path, cifar_run(tmp_path / "data"), "nchw")
    assert "channels_last:" not in (nchw / "config.yaml").read_text()
    assert plain_module.student.net.stem[0].weight.is_contiguous()
    assert losses(nhwc) == pytest.approx(losses(nchw), rel=1e-4)


def test_bf16_mixed_precision_trains_the_student_in_bfloat16(tmp_path):
    text = digits_pair("bf16", "  - {name: ce}\n  - {name: kd}\n",
                       tail="trainer: {precision: bf16-mixed}\n")
    dtypes = []
    f = tmp_path / "bf16.yaml"
    f.write_text(text)
    exp = load_experiment(f).variants["default"]
    from distill.engine import stage

    original = stage.build_module

    def hooked(*args, **kwargs):
        module = original(*args, **kwargs)
        module.student.net.register_forward_hook(lambda m, a, o: dtypes.append(o.dtype))
        return module

    stage.build_module = hooked
    try:
        metrics, _ = fit(exp, 0, tmp_path / "run", "bf16", RunPlan(interactive=False),
                         say=lambda _: None)
    finally:
        stage.build_module = original
    assert torch.bfloat16 in dtypes
    assert metrics["top1"] > 30  # it learns (10 classes)


def test_the_switches_are_refused_when_not_booleans(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text(digits_pair("x", "  - {name: ce}\n", tail="compile: 'yes'\n"))
    from distill.errors import UserError

    with pytest.raises(UserError, match="compile"):
        load_experiment(f)


@pytest.mark.slow
def test_compile_trains_the_compiled_networks_to_the_same_numbers(tmp_path):
    text = digits_pair("compiled", "  - {name: ce}\n  - {name: kd}\n").replace(
        "net: {name: mlp, hidden: [32]}",
        "net: {name: mlp, hidden: [32], taps: {features: body.2}}")
    _, metrics, module, compiled = trained(tmp_path, text + "compile: true\n", "compiled")
    assert module.student.net._compiled_call_impl is not None
    assert module.teacher.network.net._compiled_call_impl is not None
    saved = torch.load(compiled / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert {f"student.{k}" for k in module.student.state_dict()} <= set(saved)  # names kept
    assert not any("_orig_mod" in k for k in saved)
    _, plain, _, eager = trained(tmp_path, text, "eager")
    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-3)
    assert json.loads((compiled / "metrics.json").read_text())["top1"] == pytest.approx(
        plain["top1"], abs=1.0)


def test_compile_without_a_compiler_is_refused_at_validate(tmp_path, monkeypatch):
    from distill.engine import acceleration
    from distill.errors import UserError
    from distill.file_check import validate_builds

    f = tmp_path / "c.yaml"
    f.write_text(digits_pair("c", "  - {name: ce}\n", tail="compile: true\n"))
    ef = load_experiment(f)
    monkeypatch.setattr(acceleration.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="c.yaml:13: compile: torch.compile needs a C\\+\\+ "
                                        "compiler"):
        validate_builds(ef)
    monkeypatch.setattr(acceleration.shutil, "which", lambda name: f"/usr/bin/{name}")
    validate_builds(ef)
