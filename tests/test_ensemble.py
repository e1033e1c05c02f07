"""Ensemble teachers (teacher: {role: ensemble, members: [...]}): how member scores combine, each
member's teacher stage trained once and shared, the ensemble's accuracy as a row of its own, and
what the role refuses."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from distill.cli import main
from distill.config.load import load_experiment
from distill.engine.build import build_data, build_net, teacher_net_spec, teacher_parts
from distill.engine.stage import RunPlan
from distill.runner import run_experiment
from experiment_text import build_variant
from teachers.checkpoint import load_weights
from teachers.ensemble import combine_logits

ENSEMBLE = """\
name: trio
seeds: [0]
data: {name: digits, batch_size: 64}
teacher:
  role: ensemble
  net: {name: mlp, hidden: [64]}
  train: {epochs: 2, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
  members:
    - {seed: 0}
    - {seed: 1, weight: 2}
    - {seed: 2, net: {name: mlp, hidden: [48]}}
student:
  net: {name: mlp, hidden: [32]}
train: {epochs: 2, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
objectives:
  - {name: ce}
  - {name: kd, temperature: 4.0}
"""
# the frozen teacher of the other variant is the first member's recipe: one stage for both
SHARED = ENSEMBLE + """\
variants:
  ensemble: {}
  single: {teacher: {role: frozen, members: null}}
"""


def write(tmp_path, text=ENSEMBLE, name="trio.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_logits_combine_as_their_weighted_mean():
    z = [torch.randn(4, 5) for _ in range(3)]
    w = torch.tensor([0.5, 0.3, 0.2])
    expected = 0.5 * z[0] + 0.3 * z[1] + 0.2 * z[2]
    assert torch.allclose(combine_logits(z, w, "logits"), expected, atol=1e-6)


def test_probabilities_combine_so_that_the_softmax_is_the_weighted_mean_prediction():
    z = [torch.randn(4, 5) * 3 for _ in range(3)]
    w = torch.tensor([0.5, 0.3, 0.2])
    combined = combine_logits(z, w, "probabilities")
    mean = sum(wk * F.softmax(zk, dim=1) for wk, zk in zip(w, z))
    assert torch.allclose(F.softmax(combined, dim=1), mean, atol=1e-6)
    assert torch.allclose(combined.exp().sum(1), torch.ones(4), atol=1e-5)  # log-probabilities
    # one member: its own prediction, whichever way they combine
    assert torch.allclose(F.softmax(combine_logits(z[:1], torch.ones(1), "probabilities"), 1),
                          F.softmax(z[0], 1), atol=1e-6)


def test_the_teacher_output_combines_the_members_with_their_normalised_weights(tmp_path):
    for combine in ("logits", "probabilities"):
        text = ENSEMBLE.replace("role: ensemble\n", f"role: ensemble\n  combine: {combine}\n")
        module, data = build_variant(load_experiment(str(write(tmp_path, text))), "default")
        x = next(iter(data.train_dataloader()))[0]
        members = module.teacher.network.members
        assert len(members) == 3 and not any(p.requires_grad for p in module.teacher.parameters())
        expected = combine_logits([m(x).logits for m in members],
                                  torch.tensor([0.25, 0.5, 0.25]), combine)
        assert torch.allclose(module.teacher(x).logits, expected, atol=1e-6)


def test_each_member_stage_trains_once_and_the_ensemble_is_a_row_of_its_own(tmp_path, capsys):
    f = write(tmp_path, SHARED)
    out = tmp_path / "runs"
    assert main(["run", str(f), "--out", str(out)]) == 0
    exp_dir = out / "trio"
    stages = sorted(p.name for p in exp_dir.iterdir() if p.name.startswith("teacher"))
    assert len(stages) == 3
    by_seed = {json.loads((exp_dir / s / "identity.json").read_text())["seed"]: s for s in stages}
    assert by_seed[0] == "teacher"  # the single teacher is member 0
    # the run's teacher is the three stage files combined, weighted 1:2:1
    exp = load_experiment(str(f)).variants["ensemble"]
    data = build_data(exp, 0)
    nets = []
    for prefix, part in teacher_parts(exp):
        net = build_net(teacher_net_spec(part), data, prefix)
        load_weights(net, exp_dir / by_seed[part.teacher.seed] / "teacher.pt")
        nets.append(net.eval())
    metrics = json.loads((exp_dir / "ensemble" / "seed0" / "metrics.json").read_text())
    right = total = 0
    with torch.no_grad():
        for x, y, *_ in data.test_dataloader():
            z = combine_logits([n(x).logits for n in nets], torch.tensor([0.25, 0.5, 0.25]))
            right, total = right + (z.argmax(1) == y).sum().item(), total + len(y)
    accuracy = right / total * 100
    assert metrics["teacher_metrics"]["top1"] == pytest.approx(accuracy, abs=1e-3)
    capsys.readouterr()
    assert main(["compare", str(exp_dir), "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    rows = {row["variant"]: row for row in table["rows"]}
    assert [r["variant"] for r in table["rows"]][:3] == stages  # the references first
    assert all(rows[s]["role"] == "reference" and not rows[s]["top1"]["best"] for s in stages)
    assert "ensemble:teacher" in rows and not rows["ensemble:teacher"]["top1"]["best"]
    assert table["baseline"] == "ensemble"
    assert "single:teacher" not in rows  # a frozen single teacher is its stage's row


def test_a_variant_that_does_not_distil_still_reports_the_trained_ensemble(tmp_path):
    text = ENSEMBLE + "variants:\n  kd: {}\n  ce-only: {objectives: [{name: ce}]}\n"
    out = tmp_path / "runs"
    assert main(["run", str(write(tmp_path, text)), "--out", str(out)]) == 0
    teachers = [json.loads((out / "trio" / v / "seed0" / "metrics.json").read_text())[
        "teacher_metrics"]["top1"] for v in ("kd", "ce-only")]
    assert teachers[0] == teachers[1] > 50  # the trained members, not their initialisation


def test_a_members_own_objectives_get_their_defaults_from_the_training_it_inherits(tmp_path):
    text = ENSEMBLE.replace("- {seed: 0}", "- {seed: 0, objectives: [{name: ce}]}")
    exp = load_experiment(str(write(tmp_path, text))).variants["default"]
    stage = teacher_parts(exp)[0][1].teacher
    assert [(o.weight, o.warmup_epochs) for o in stage.objectives] == [(1.0, 0)]


@pytest.mark.parametrize("change,key,words", [
    (("role: ensemble\n", "role: frozen\n"), "teacher.members", ["role: ensemble"]),
    (("  members:\n", "  checkpoint: t.pt\n  members:\n"), "teacher.checkpoint",
     ["per member"]),
    (("seed: 1, weight: 2}", "seed: 1, weight: 2, checkpoint: t.pt, train: {epochs: 1}}"),
     "teacher.members.1.train", ["not both"]),
    (("  train: {epochs: 2, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}\n  members:",
      "  members:"), "teacher.members.0", ["checkpoint:", "train:"]),
    (("seed: 1, weight: 2}", "seed: 0, weight: 2}"), "teacher.members.1", ["member 0 again"]),
    (("seed: 1, weight: 2}", "seed: 1, weight: 0}"), "teacher.members.1.weight", ["0"]),
    (("seed: 2, net: {name: mlp, hidden: [48]}}",
      "seed: 2, net: {name: mlp, hidden: [48], taps: {f: nowhere}}}"),
     "teacher.members.2.net", ["nowhere"]),
    (("seed: 2, net:", "seed: 2, objectives: [{name: kdd}], net:"),
     "teacher.members.2.objectives.0", ["kd"]),
    (("  - {name: kd, temperature: 4.0}\n", "  - {name: nd}\n"), "objectives.1",
     ["combined logits only"]),
    (("  - {name: kd, temperature: 4.0}\n", "  - {name: at, pairs: [[s1, t1]]}\n"),
     "objectives.1", ["combined logits only"]),
    (("objectives:", "evaluate: [{name: knn}]\nobjectives:"), "evaluate.0.of",
     ["combined logits only", "of:"]),
    (("  members:\n", "  seed: 3\n  members:\n"), "teacher.seed", ["per member"]),
    (("seed: 2, net:", "seed: 2, train: {epochs: 1, optimizer: {name: adam, betas: [2, 0.9]}}, "
                       "net:"), "teacher.members.2.train.optimizer",
     ["check teacher.members.2.train.optimizer"]),
    (("data: {name: digits, batch_size: 64}", "data: {name: digits, batch_size: 64, labels: "
                                              "false}"), "teacher.train",
     ["labels", "teacher.members.0.checkpoint"]),
    (("objectives:", "continual: {tasks: 2, setting: class-incremental}\nobjectives:"),
     "teacher.role", ["task sequences"]),
    (("  net: {name: mlp, hidden: [32]}\n", "  net: {name: mlp, hidden: [64]}\n  init: {from: "
                                             "teacher}\n"), "student.init", ["ensemble"]),
    (("role: ensemble\n", "role: ensemble\n  combine: median\n"), "teacher.combine",
     ["logits"]),
])
def test_what_an_ensemble_refuses_is_one_line(tmp_path, capsys, change, key, words):
    text = ENSEMBLE.replace(*change)
    assert text != ENSEMBLE
    assert main(["validate", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and all(w in err for w in words), err


def test_a_member_checkpoint_of_another_network_names_that_member(tmp_path, capsys):
    weights = tmp_path / "wide.pt"
    exp = load_experiment(str(write(tmp_path))).variants["default"]
    data = build_data(exp, 0)
    torch.save({"state_dict": build_net(teacher_net_spec(teacher_parts(exp)[0][1]), data,
                                        "x").net.state_dict()}, weights)
    text = ENSEMBLE.replace("- {seed: 2,", f"- {{checkpoint: {weights},")
    out = tmp_path / "runs"
    assert main(["run", str(write(tmp_path, text)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "teacher.members.2.net" in err and len(err.splitlines()) == 1, err
    assert not (out / "trio" / "default").exists()


def test_a_run_with_an_ensemble_reads_its_stage_files_not_the_checkpoints(tmp_path):
    """Members from checkpoints need no stage: the run loads the files the file names."""
    exp = load_experiment(str(write(tmp_path))).variants["default"]
    data = build_data(exp, 0)
    files = []
    for i, (_, part) in enumerate(teacher_parts(exp)):
        net = build_net(teacher_net_spec(part), data, "x")
        torch.manual_seed(10 + i)
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.3)
        files.append(tmp_path / f"m{i}.pt")
        torch.save({"state_dict": net.net.state_dict()}, files[-1])
    text = ENSEMBLE
    for i in range(3):
        text = text.replace(f"- {{seed: {i}", f"- {{checkpoint: {files[i]}")
    f = write(tmp_path, text, "ck.yaml")
    ef = load_experiment(str(f))
    summaries = run_experiment(ef, tmp_path / "runs", None, RunPlan(fast=True), say=lambda _: None)
    assert summaries and not any(p.name.startswith("teacher")
                                 for p in (tmp_path / "runs" / "trio").iterdir())
    module, _ = build_variant(ef, "default")
    x = next(iter(data.train_dataloader()))[0]
    loaded = [torch.load(p, weights_only=True)["state_dict"] for p in files]
    for member, state in zip(module.teacher.network.members, loaded):
        assert all(torch.equal(member.net.state_dict()[k], v) for k, v in state.items())
    assert module.teacher(x).logits.shape == (len(x), 10)


def test_a_single_teachers_run_configuration_is_as_before_ensembles(tmp_path):
    """Run folders made before the ensemble role keep their configuration, so they resume."""
    from distill.engine.stage import resolved_config

    single = load_experiment(str(write(tmp_path, SHARED))).variants["single"]
    assert "members" not in resolved_config(single, 0)
    ensemble = load_experiment(str(write(tmp_path, SHARED))).variants["ensemble"]
    assert "members:" in resolved_config(ensemble, 0)
