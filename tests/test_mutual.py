"""Deep mutual learning (teacher: {role: mutual}): the teacher's own loss, its training with the
student from scratch, its accuracy in a row of its own, and what the role refuses."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from distill.cli import main
from distill.config.load import load_experiment
from experiment_text import build_variant

MUTUAL = """\
name: dml
seeds: [0]
data: {name: digits, batch_size: 64}
teacher: {role: mutual, net: {name: mlp, hidden: [64]}}
student:
  net: {name: mlp, hidden: [32]}
train: {epochs: 2, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
objectives:
  - {name: ce}
  - {name: kd, temperature: 1.0}
"""


def write(tmp_path, text=MUTUAL):
    f = tmp_path / "dml.yaml"
    f.write_text(text)
    return f


def test_the_teachers_loss_is_ce_plus_kl_toward_the_student_as_a_constant(tmp_path):
    module, data = build_variant(load_experiment(str(write(tmp_path, MUTUAL.replace(
        "role: mutual,", "role: mutual, kl_weight: 2.0, temperature: 3.0,")))), "default")
    x, y, index = next(iter(data.train_dataloader()))
    step = module.kind.step(module, (x, y, index))
    terms = module.teacher.loss(step)
    z_t, z_s = step.teacher.logits, step.student.logits
    p_s = F.softmax(z_s.detach() / 3.0, dim=1)
    kl = (p_s * (p_s.log() - F.log_softmax(z_t / 3.0, dim=1))).sum(1).mean() * 9.0
    assert terms["ce"].item() == pytest.approx(F.cross_entropy(z_t, y).item(), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(2.0 * kl.item(), rel=1e-5)
    terms["kl"].backward()
    assert all(p.grad is None for p in module.student.parameters())  # the student is a target
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in module.teacher.parameters())


def test_teacher_and_student_train_together_and_the_teacher_is_a_row_of_its_own(tmp_path,
                                                                               capsys):
    f = write(tmp_path)
    module, _ = build_variant(load_experiment(str(f)), "default")
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) in trained for p in module.teacher.parameters())
    assert module.teacher.network.training
    assert all(p.requires_grad for p in module.teacher.parameters())

    out = tmp_path / "runs"
    assert main(["run", str(f), "--out", str(out)]) == 0
    metrics = json.loads((out / "dml" / "default" / "seed0" / "metrics.json").read_text())
    assert metrics["teacher_metrics"]["top1"] > 50 and metrics["top1"] > 50  # both learned
    capsys.readouterr()
    assert main(["compare", str(out / "dml"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    variants = [line.split(",")[0] for line in lines[1:]]
    assert variants == ["default", "default:teacher"]
    teacher_row = lines[2].split(",")
    header = lines[0].split(",")
    assert float(teacher_row[header.index("top1_mean")]) == pytest.approx(
        metrics["teacher_metrics"]["top1"])
    log = (out / "dml" / "default" / "seed0" / "logs" / "metrics.csv").read_text()
    assert "train/teacher/ce" in log and "val/teacher_acc" in log


@pytest.mark.parametrize("change,key,words", [
    (("teacher: {role: mutual,", "teacher: {role: mutual, checkpoint: t.pt,"), "teacher.checkpoint",
     ["makes its own weights"]),
    (("objectives:", "continual: {tasks: 2, setting: class-incremental}\nobjectives:"),
     "teacher.role", ["task sequences"]),
    (("data: {name: digits, batch_size: 64}", "data: {name: digits, batch_size: 64, "
                                              "labels: false}"), "teacher.role", ["labels"]),
    (("role: mutual,", "role: mutual, kl_weight: -1,"), "teacher.kl_weight", ["0"]),
])
def test_what_a_mutual_teacher_refuses_is_one_line(tmp_path, capsys, change, key, words):
    text = MUTUAL.replace(*change)
    if "labels: false" in text:
        text = text.replace("  - {name: ce}\n  - {name: kd, temperature: 1.0}\n",
                            "  - {name: kd, temperature: 1.0}\n")
    assert main(["validate", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and all(w in err for w in words), err


def test_a_cotrained_teacher_row_is_never_marked_best_nor_the_baseline():
    from distill.errors import UserError
    from distill.results.table import MethodTable

    rows = [{"experiment": "e", "variant": v, "seed": 0, "task": 0, "metric": "top1",
             "value": value} for v, value in (("ce", 80.0), ("dml", 82.0), ("dml:teacher", 90.0))]
    table = MethodTable.from_rows(rows, order=["ce", "dml"])
    assert table.variants == ["ce", "dml", "dml:teacher"]
    assert table.best("top1") == {"dml"}
    assert table.delta("dml:teacher", "top1") == pytest.approx(10.0)
    with pytest.raises(UserError, match="a variant's teacher, never the baseline"):
        MethodTable.from_rows(rows, baseline="dml:teacher")
