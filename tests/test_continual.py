"""Continual learning: the task split, the accuracy matrix and its metrics, the PRD and SupCon
losses against hand-written formulas, the snapshot teacher, prototype prediction, the manifest, the
generators' state in checkpoints, and the experiment files."""
from __future__ import annotations

import io
import json
import math
import random
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill.cli import main
from distill.config import load_experiment
from distill.continual.accuracy_matrix import AccuracyMatrix, metric_notes
from distill.continual.manifest import Manifest
from distill.continual.tasks import check_continual, task_sequence
from distill.continual.task_data import task_data
from distill.continual.tasks import TaskSequence
from distill.engine.build import build_data, build_module, build_teacher
from distill.engine.rng_state import capture_rng, restore_rng
from distill.contracts import ModelOutput, Step
from distill.errors import ConfigError, UserError
from distill.objectives.prd import prd_loss, relation_scores
from distill.objectives.supcon import supcon_loss
from distill.results.report import METRIC_NOTES

SEQUENCE = """\
name: seq
seeds: [0]
data: {name: mnist1d, batch_size: 32, views: {name: signal, count: 2}}
student:
  net: {name: cnn1d, width: 8, batch_norm: true}    # BatchNorm: the snapshot's mode matters
teacher: {role: snapshot}
train: {epochs: 1, optimizer: {name: sgd, lr: 0.01}}
continual: {tasks: 3, setting: task-incremental}
objectives:
  - {name: supcon, temperature: 0.1}
  - {name: prd}
variants:
  prd: {}
  lwf:
    data: {views: null}
    objectives: [{name: ce, within_task: true}, {name: lwf}]
"""


@pytest.fixture
def sequence_file(tmp_path):
    path = tmp_path / "seq.yaml"
    path.write_text(SEQUENCE)
    return path


def module_for(path, variant, task=1):
    exp = load_experiment(str(path)).variants[variant]
    base = build_data(exp, 0)
    tasks = task_sequence(exp, base.num_classes, 0)
    data = task_data(base, tasks, task, 0)
    module = build_module(exp, data, build_teacher(exp, data, None), task=task, tasks=tasks)
    return module, data, tasks


# -- the task split -----------------------------------------------------------------------------

def test_classes_are_cut_into_consecutive_groups_in_the_given_order():
    assert TaskSequence.split(10, 5).classes == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    uneven = TaskSequence.split(10, 3, order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert uneven.classes == ((9, 8, 7, 6), (5, 4, 3), (2, 1, 0))
    assert uneven.seen(1) == [9, 8, 7, 6, 5, 4, 3]


def test_a_seed_order_is_a_permutation_fixed_by_the_seed():
    first, again = TaskSequence.split(10, 5, "seed", 3), TaskSequence.split(10, 5, "seed", 3)
    other = TaskSequence.split(10, 5, "seed", 4)
    assert first == again and first != other
    assert sorted(c for group in first.classes for c in group) == list(range(10))


def test_more_tasks_than_classes_or_a_wrong_order_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        TaskSequence.split(10, 11)
    assert e.value.key == "continual.tasks" and "11 tasks" in e.value.message
    with pytest.raises(ConfigError) as e:
        TaskSequence.split(4, 2, order=[0, 1, 2, 2])
    assert e.value.key == "continual.order"


def test_task_data_holds_only_the_task_classes(sequence_file):
    exp = load_experiment(str(sequence_file)).variants["prd"]
    base = build_data(exp, 0)
    tasks = task_sequence(exp, base.num_classes, 0)
    data = task_data(base, tasks, 1, 0)
    assert set(data.train_targets().tolist()) == set(tasks.classes[1])
    test_labels = {int(data.test_set[k][1]) for k in range(len(data.test_set))}
    assert test_labels == set(tasks.classes[1])
    expected = int(torch.isin(base.splits.train_targets, torch.tensor(tasks.classes[1])).sum())
    assert len(data.train_set) == expected


# -- the accuracy matrix ------------------------------------------------------------------------

HAND_R = [[90.0], [95.0, 80.0], [60.0, 75.0, 85.0]]


def test_metrics_of_a_hand_matrix():
    matrix = AccuracyMatrix.of(HAND_R)
    assert matrix.average_accuracy() == pytest.approx((60 + 75 + 85) / 3)
    assert matrix.average_incremental_accuracy() == pytest.approx(
        (90 + (95 + 80) / 2 + (60 + 75 + 85) / 3) / 3)
    # task 0 peaked at 95 (after task 1), task 1 at 80: drops 35 and 5
    assert matrix.forgetting() == pytest.approx((35 + 5) / 2)
    assert matrix.backward_transfer() == pytest.approx(((60 - 90) + (75 - 80)) / 2)
    assert matrix.metrics("cil") == {
        "cil_avg_acc": pytest.approx(220 / 3), "cil_avg_inc_acc": pytest.approx(
            (90 + 87.5 + 220 / 3) / 3),
        "cil_forgetting": pytest.approx(20.0), "cil_bwt": pytest.approx(-17.5)}


def test_the_sample_weighted_average_counts_every_test_sample_once():
    # unequal tasks: 100, 300 and 50 test samples; after the last task 60, 75 and 85 % correct
    matrix = AccuracyMatrix.of(HAND_R, counts=[100, 300, 50])
    correct = 0.60 * 100 + 0.75 * 300 + 0.85 * 50  # 327.5 of 450 samples
    assert matrix.sample_weighted_accuracy() == pytest.approx(100 * correct / 450)
    assert matrix.sample_weighted_accuracy(after=1) == pytest.approx(
        (95 * 100 + 80 * 300) / 400)
    metrics = matrix.metrics("cil")
    assert metrics["cil_avg_acc_samples"] == pytest.approx(72.777777, rel=1e-6)
    assert metrics["cil_avg_acc"] == pytest.approx(220 / 3)  # the task mean, unchanged
    assert AccuracyMatrix.of(HAND_R, counts=[7, 7, 7]).sample_weighted_accuracy() == (
        pytest.approx(220 / 3))
    assert "cil_avg_acc_samples" not in AccuracyMatrix.of(HAND_R).metrics("cil")
    with pytest.raises(ValueError):
        AccuracyMatrix.of(HAND_R, counts=[100, 300])


def test_the_runner_records_each_task_test_size_and_reports_both_averages(tmp_path):
    from distill.continual.evaluate import task_test_counts
    from distill.continual.runner import matrices

    exp = load_experiment(str(SEQUENCE_PATH(tmp_path))).variants["prd"]
    base = build_data(exp, 0)
    tasks = TaskSequence.split(10, 3)  # 4, 3 and 3 classes: unequal test sets
    counts = task_test_counts(base, tasks, 2)
    test_y = base.splits.test_targets
    assert counts == [int(torch.isin(test_y, torch.tensor(g)).sum()) for g in tasks.classes]
    assert counts[0] > counts[1]
    manifest = Manifest.open(tmp_path, "abc", tasks)
    for i, row in enumerate(HAND_R):
        manifest.record({"task": i, "rows": {"cil": row}, "test_counts": counts[:i + 1]})
    final = matrices(manifest, 2)["cil"]
    assert final.sample_weighted_accuracy() == pytest.approx(
        sum(n * r for n, r in zip(counts, HAND_R[2])) / sum(counts))
    assert matrices(manifest, 1)["cil"].sample_weighted_accuracy() == pytest.approx(
        (95 * counts[0] + 80 * counts[1]) / (counts[0] + counts[1]))


def test_one_task_has_no_forgetting_and_a_ragged_matrix_is_refused():
    assert AccuracyMatrix.of([[70.0]]).metrics("til") == {"til_avg_acc": 70.0,
                                                          "til_avg_inc_acc": 70.0}
    assert AccuracyMatrix.of([[70.0]], [9]).metrics("til")["til_avg_acc_samples"] == 70.0
    with pytest.raises(ValueError):
        AccuracyMatrix.of([[70.0], [60.0]])


def test_every_continual_metric_is_defined_for_the_method_table():
    for prefix in ("til", "cil"):
        for name in ("avg_acc", "avg_acc_samples", "avg_inc_acc", "forgetting", "bwt"):
            assert f"{prefix}_{name}" in METRIC_NOTES
    assert "mean over tasks" in metric_notes()["cil_avg_acc"]
    assert "all test samples of the seen classes" in metric_notes()["cil_avg_acc_samples"]
    assert "Chaudhry" in metric_notes()["cil_forgetting"]
    assert "GEM" in metric_notes()["til_bwt"]


# -- the losses against their formulas ----------------------------------------------------------

def reference_prd(old, new, temperature, over):
    """KL(softmax(old/T) || softmax(new/T)) written out with loops, in float64."""
    old, new = old.double().tolist(), new.double().tolist()
    if over == "samples":  # one distribution per prototype over the samples
        old, new = [list(col) for col in zip(*old)], [list(col) for col in zip(*new)]
    total = 0.0
    for o_row, n_row in zip(old, new):
        o_z = sum(math.exp(v / temperature) for v in o_row)
        n_z = sum(math.exp(v / temperature) for v in n_row)
        for o, n in zip(o_row, n_row):
            p, q = math.exp(o / temperature) / o_z, math.exp(n / temperature) / n_z
            total += p * math.log(p / q)
    return total / len(old)


@pytest.mark.parametrize("over", ["prototypes", "samples"])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_prd_loss_equals_its_formula(over, temperature):
    g = torch.Generator().manual_seed(0)
    old, new = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g)
    value = prd_loss(old, new, temperature, over)
    assert value.item() == pytest.approx(reference_prd(old, new, temperature, over), rel=1e-5)
    assert prd_loss(old, old, temperature, over).item() == pytest.approx(0.0, abs=1e-6)


def test_the_two_softmax_directions_differ():
    g = torch.Generator().manual_seed(1)
    old, new = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    assert prd_loss(old, new, over="prototypes").item() != pytest.approx(
        prd_loss(old, new, over="samples").item())


def test_relation_scores_are_features_on_unit_prototypes():
    g = torch.Generator().manual_seed(2)
    h, p = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g)
    expected = [[sum(a * b for a, b in zip(hi, pc)) / math.sqrt(sum(b * b for b in pc))
                 for pc in p.tolist()] for hi in h.tolist()]
    assert torch.allclose(relation_scores(h, p), torch.tensor(expected), atol=1e-5)


def reference_supcon(embeddings, labels, temperature, base_temperature=0.07):
    z = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in embeddings.tolist()]
    labels = labels.tolist()
    losses = []
    for i, zi in enumerate(z):
        dots = [sum(a * b for a, b in zip(zi, za)) / temperature for za in z]
        denominator = sum(math.exp(d) for a, d in enumerate(dots) if a != i)
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if positives:
            losses.append(-sum(math.log(math.exp(dots[p]) / denominator) for p in positives)
                          / len(positives))
    return temperature / base_temperature * sum(losses) / len(losses)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon_loss_equals_its_formula(temperature):
    g = torch.Generator().manual_seed(3)
    embeddings = torch.randn(8, 5, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2])  # class 3 has no positive: not an anchor
    value = supcon_loss(embeddings, labels, temperature)
    assert value.item() == pytest.approx(reference_supcon(embeddings, labels, temperature),
                                         rel=1e-5)


def test_supcon_loss_carries_supcontrast_scale_temperature_over_base_temperature():
    # two classes, two views each, views of a class equal, classes orthogonal: every anchor has
    # one positive at similarity 1 and two negatives at 0, so Eq. 2 at tau = 1 is log(1 + 2/e)
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 1])
    eq2 = math.log(1 + 2 / math.e)
    assert supcon_loss(z, labels, 1.0).item() == pytest.approx(eq2 / 0.07, rel=1e-6)
    assert supcon_loss(z, labels, 1.0, base_temperature=1.0).item() == pytest.approx(eq2,
                                                                                     rel=1e-6)
    # at tau = 0.5: log(1 + 2 e^-2), times 0.5 / 0.07 (SupContrast's and PRD's loss)
    assert supcon_loss(z, labels, 0.5).item() == pytest.approx(
        math.log1p(2 * math.exp(-2)) * 0.5 / 0.07, rel=1e-5)


def test_the_supcon_objective_reads_base_temperature_and_projection_layers(tmp_path):
    path = tmp_path / "seq.yaml"
    path.write_text(SEQUENCE.replace(
        "{name: supcon, temperature: 0.1}",
        "{name: supcon, temperature: 0.1, base_temperature: 0.1, projection_layers: 3, "
        "hidden_dim: 24, projection_dim: 16}"))
    module, data, _ = module_for(path, "prd", task=0)
    supcon = module.objectives[0]
    linears = [m for m in supcon.projection if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8 * 5, 24), (24, 24), (24, 16)]
    assert sum(isinstance(m, torch.nn.ReLU) for m in supcon.projection) == 2
    step = prd_step(module, data, 0)
    z = supcon.projection(torch.cat([v.features for v in step.student_views]))
    labels = step.labels.repeat(2)
    value = supcon(step).item()
    assert value == pytest.approx(supcon_loss(z, labels, 0.1, 0.1).item(), rel=1e-6)
    assert value != pytest.approx(supcon_loss(z, labels, 0.1).item(), rel=1e-3)
    default, _, _ = module_for(SEQUENCE_PATH(tmp_path), "prd", task=0)
    assert [type(m) for m in default.objectives[0].projection] == [
        torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]


def SEQUENCE_PATH(folder):
    path = folder / "default.yaml"
    path.write_text(SEQUENCE)
    return path


def test_supcon_loss_is_lower_when_views_of_a_class_agree():
    labels = torch.tensor([0, 0, 1, 1])
    agree = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    disagree = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01], [0.01, 1.0]])
    assert supcon_loss(agree, labels, 0.1) < supcon_loss(disagree, labels, 0.1)


# -- objectives, snapshot teacher and prediction ------------------------------------------------

def test_the_snapshot_holds_the_student_and_prototypes_of_when_it_was_taken(sequence_file):
    module, _, _ = module_for(sequence_file, "prd")
    prd = module.objectives[1]
    module.teacher.take()
    frozen_net = {k: v.clone() for k, v in module.teacher.network.state_dict().items()}
    frozen_protos = [head.weight.clone() for head in prd.old_prototypes]
    assert all(torch.equal(frozen_net[k], v) for k, v in module.student.state_dict().items())
    with torch.no_grad():
        for p in list(module.student.parameters()) + list(prd.prototypes.parameters()):
            p.add_(1.0)
    assert all(torch.equal(frozen_net[k], v)
               for k, v in module.teacher.network.state_dict().items())
    assert all(torch.equal(a, head.weight) for a, head in zip(frozen_protos, prd.old_prototypes))
    assert not any(p.requires_grad for p in module.teacher.parameters())
    assert not any(p.requires_grad for p in prd.old_prototypes.parameters())


def prd_step(module, data, task):
    batch = data.training_batch(next(iter(data.train_dataloader())), epoch=0)  # with its views
    module.task = task
    return module.make_step(batch)


def test_prd_terms_follow_the_paper(sequence_file):
    module, data, tasks = module_for(sequence_file, "prd", task=1)
    prd = module.objectives[1]
    module.teacher.take()
    # right after the snapshot (identical weights, BatchNorm on the batch's statistics in both,
    # as in the authors' code) the old and new relations are the same: exactly 0
    assert prd(prd_step(module, data, 1))["relation"].item() == 0.0
    with torch.no_grad():  # then the student moves away from its snapshot
        for p in module.student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    step = prd_step(module, data, 1)
    features = torch.cat([v.features for v in step.student_views])
    labels = step.labels.repeat(2)
    rows = prd.prototypes[1].weight[[tasks.classes[1].index(int(c)) for c in labels]]
    expected_p = (1 - F.cosine_similarity(features, rows, dim=1)).mean()
    old_features = torch.cat([v.features for v in step.teacher_views])
    expected_r = prd_loss(relation_scores(old_features, prd.old_prototypes[0].weight),
                          relation_scores(features, prd.prototypes[0].weight))
    terms = prd(step)
    assert terms["prototypes"].item() == pytest.approx(2 * expected_p.item(), rel=1e-5)
    assert expected_r.item() > 1e-4
    assert terms["relation"].item() == pytest.approx(4 * expected_r.item(), rel=1e-5)
    # the prototype loss reaches the prototypes only, never the features
    grad = torch.autograd.grad(terms["prototypes"], [features, prd.prototypes[1].weight],
                               allow_unused=True)
    assert grad[0] is None and grad[1].abs().sum() > 0


def with_snapshot_option(path, option):
    path.write_text(path.read_text().replace(SNAPSHOT_LINE, f"teacher: {{role: snapshot{option}}}\n"))
    return path


@pytest.mark.parametrize("option, batch_stats", [("", True), (", batch_stats: true", True),
                                                 (", batch_stats: false", False)])
def test_only_the_eval_mode_snapshot_gives_a_relation_right_after_it_is_taken(
        sequence_file, option, batch_stats):
    module, data, _ = module_for(with_snapshot_option(sequence_file, option), "prd", task=1)
    assert module.teacher.batch_stats is batch_stats  # read from the file
    module.teacher.take()
    relation = module.objectives[1](prd_step(module, data, 1))["relation"].item()
    if batch_stats:  # the authors' old model: same weights, same batch statistics
        assert relation == 0.0
    else:  # running statistics vs the batch's: PRD distils the gap between them
        assert relation > 1e-3
    assert module.teacher.static is not batch_stats  # batch-dependent outputs are not cached


def test_the_snapshot_running_statistics_stay_as_taken_while_the_student_trains(sequence_file):
    module, data, _ = module_for(sequence_file, "prd", task=1)
    network = module.teacher.network
    module.teacher.on_task_start(1)
    taken = {k: v.clone() for k, v in network.state_dict().items()}
    x = torch.stack([data.test_set[k][0] for k in range(16)])
    module.eval()
    eval_before = module.teacher(x).features
    module.train()
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    student_before = {k: v.clone() for k, v in module.student.state_dict().items()}
    for k, batch in zip(range(3), data.train_dataloader()):
        optimizer.zero_grad()
        module.batch_loss(data.training_batch(batch, epoch=0)).backward()
        optimizer.step()
    assert any("running_mean" in k and not torch.equal(v, student_before[k])
               for k, v in module.student.state_dict().items())  # the student's did move
    assert network.state_dict().keys() == taken.keys()
    assert all(torch.equal(v, taken[k]) for k, v in network.state_dict().items())
    bn = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bn and all(not m.training and m.track_running_stats for m in bn)
    assert not any(p.grad is not None for p in network.parameters())
    module.eval()  # evaluation passes use the running statistics, unchanged by the training
    assert torch.equal(module.teacher(x).features, eval_before)
    module.train()
    assert not torch.allclose(module.teacher(x).features, eval_before, atol=1e-3)


def test_the_snapshot_option_leaves_the_checkpoint_keys_alone(sequence_file, tmp_path):
    default, _, _ = module_for(sequence_file, "prd", task=1)
    other = tmp_path / "eval_mode.yaml"
    other.write_text(sequence_file.read_text())
    eval_mode, _, _ = module_for(with_snapshot_option(other, ", batch_stats: false"), "prd",
                                 task=1)
    assert list(default.state_dict()) == list(eval_mode.state_dict())


def test_the_snapshot_is_taken_when_a_task_after_the_first_starts(sequence_file):
    module, _, _ = module_for(sequence_file, "prd", task=1)
    with torch.no_grad():
        for p in module.student.parameters():
            p.add_(1.0)
    module.teacher.on_task_start(0)
    student = module.student.state_dict()
    assert not any(torch.equal(v, student[k]) for k, v in
                   module.teacher.network.state_dict().items() if k.endswith("weight"))
    module.teacher.on_task_start(1)
    assert all(torch.equal(v, student[k]) for k, v in module.teacher.network.state_dict().items())


def test_prd_has_no_relation_term_during_the_first_task(sequence_file):
    module, data, _ = module_for(sequence_file, "prd", task=0)
    terms = module.objectives[1](prd_step(module, data, 0))
    assert terms["relation"].item() == 0.0


def test_prd_predicts_by_the_nearest_normalised_prototype(sequence_file):
    module, data, tasks = module_for(sequence_file, "prd")
    prd = module.objectives[1]
    x = torch.stack([data.test_set[k][0] for k in range(6)])
    scores = module.predict_logits(x)
    h = F.normalize(module.student(x).features, dim=1)
    for c in range(tasks.num_classes):
        t = next(i for i, group in enumerate(tasks.classes) if c in group)
        p = F.normalize(prd.prototypes[t].weight[tasks.classes[t].index(c)], dim=0)
        assert torch.allclose(scores[:, c], h @ p, atol=1e-6)


def test_prototypes_train_with_their_own_learning_rate(sequence_file):
    module, _, _ = module_for(sequence_file, "prd")
    config = module.configure_optimizers()
    optimizer = config["optimizer"] if isinstance(config, dict) else config
    groups = optimizer.param_groups
    assert len(groups) == 2
    prototypes = set(map(id, module.objectives[1].prototypes.parameters()))
    assert {id(p) for p in groups[1]["params"]} == prototypes
    assert groups[1]["lr"] == 0.01 and groups[1]["momentum"] == 0.0
    assert groups[1]["weight_decay"] == 0.0
    assert not prototypes & {id(p) for p in groups[0]["params"]}


def test_lwf_distils_each_earlier_task_on_its_own_classes(sequence_file):
    module, data, tasks = module_for(sequence_file, "lwf", task=2)
    lwf = module.objectives[1]
    x, y, index = next(iter(data.train_dataloader()))
    student = ModelOutput(logits=torch.randn(len(x), 10))
    teacher = ModelOutput(logits=torch.randn(len(x), 10))
    step = Step(inputs=x, labels=y, index=index, student=student, teacher=teacher, epoch=0,
                max_epochs=1, global_step=0, task=2)
    expected = 0.0
    for group in tasks.classes[:2]:
        p = F.softmax(teacher.logits[:, list(group)] / 2, dim=1)
        log_q = F.log_softmax(student.logits[:, list(group)] / 2, dim=1)
        expected += (p * (p.log() - log_q)).sum(1).mean().item()
    assert lwf(step).item() == pytest.approx(expected, rel=1e-5)
    step.task = 0
    assert lwf(step).item() == 0.0


def test_cross_entropy_within_a_task_sees_only_its_classes(sequence_file):
    module, data, tasks = module_for(sequence_file, "lwf", task=1)
    ce = module.objectives[0]
    x, y, index = next(iter(data.train_dataloader()))
    logits = torch.randn(len(x), 10)
    step = Step(inputs=x, labels=y, index=index, student=ModelOutput(logits=logits), teacher=None,
                epoch=0, max_epochs=1, global_step=0, task=1)
    own = list(tasks.classes[1])
    expected = F.cross_entropy(logits[:, own], torch.tensor([own.index(int(c)) for c in y]))
    assert ce(step).item() == pytest.approx(expected.item(), rel=1e-6)


# -- the PRD authors' Split CIFAR-100 views ------------------------------------------------------

MEAN, STD = [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]


def draws(transform, x, n=24):
    """The augmentation of n samples equal to x (indices 0..n-1, seed 0, epoch 0)."""
    from distill.data.sample_draws import SampleDraws

    return list(transform(x.expand(n, *x.shape).clone(), SampleDraws(0, 0, torch.arange(n)), 1))


def colour_image():
    g = torch.Generator().manual_seed(5)
    return 0.1 + 0.4 * torch.rand(3, 8, 8, generator=g)  # [0, 1] intensities, far from clipping


def only(**kwargs):
    from distill.data.views import crop_jitter

    off = dict(padding=0, flip=False, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
               jitter_p=0.0, grayscale_p=0.0)
    return crop_jitter(**{**off, **kwargs})


def test_crop_jitter_defaults_are_the_prd_authors():
    import inspect

    from distill.data.views import crop_jitter

    defaults = {k: p.default for k, p in inspect.signature(crop_jitter).parameters.items()}
    assert defaults == dict(padding=4, flip=True, brightness=0.4, contrast=0.4, saturation=0.4,
                            hue=0.0, jitter_p=0.8, grayscale_p=0.2, mean=None, std=None)
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))
    outs = draws(crop_jitter(), x)
    assert len({o.sum().item() for o in outs}) == len(outs)  # each sample its own draws


def test_crop_jitter_pads_with_black_and_shifts():
    x01 = torch.full((3, 8, 8), 0.5)
    m, s = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    x = (x01 - m) / s
    assert all(torch.allclose(out, x, atol=1e-6) for out in draws(only(mean=MEAN, std=STD), x))
    black = (-m / s).expand_as(x)
    outs = draws(only(padding=4, mean=MEAN, std=STD), x)
    for out in outs:  # every pixel is the image's or the padding's black, in normalised units
        assert torch.all(torch.isclose(out, x, atol=1e-5) | torch.isclose(out, black, atol=1e-5))
    assert sum(bool(torch.isclose(out, black, atol=1e-5).any()) for out in outs) > len(outs) // 2


def test_crop_jitter_flips_half_the_time():
    x = colour_image()
    outs = draws(only(flip=True), x)
    flipped = sum(torch.equal(out, x.flip(-1)) for out in outs)
    assert flipped + sum(torch.equal(out, x) for out in outs) == len(outs)
    assert 0 < flipped < len(outs)
    assert all(torch.equal(out, x) for out in draws(only(flip=False), x))


def test_crop_jitter_colour_operations_and_their_probabilities():
    x = colour_image()
    ratios = [float((out / x).mean()) for out in draws(only(brightness=0.4, jitter_p=1.0), x)]
    assert all(0.6 - 1e-6 <= r <= 1.4 + 1e-6 for r in ratios) and max(ratios) - min(ratios) > 0.2
    assert all(torch.equal(out, x) for out in draws(only(brightness=0.4, jitter_p=0.0), x))
    some = draws(only(brightness=0.4, jitter_p=0.5), x, n=40)
    assert 5 < sum(torch.equal(out, x) for out in some) < 35
    for key in ("contrast", "saturation", "hue"):
        assert not torch.allclose(draws(only(**{key: 0.4 if key != "hue" else 0.1},
                                             jitter_p=1.0), x)[0], x, atol=1e-3), key
    grey = x.mean(0, keepdim=True).expand(3, -1, -1).clone()  # saturation and hue keep greys
    assert all(torch.allclose(out, grey, atol=1e-4)
               for out in draws(only(saturation=0.4, hue=0.1, jitter_p=1.0), grey))
    outs = draws(only(grayscale_p=1.0), x)
    assert all(torch.allclose(out[0], out[1]) and torch.allclose(out[1], out[2]) for out in outs)
    assert all(torch.equal(out, x) for out in draws(only(grayscale_p=0.0), x))
    half = draws(only(grayscale_p=0.2), x, n=50)
    assert 2 < sum(not torch.equal(out, x) for out in half) < 20


def test_split_cifar100_uses_the_prd_authors_recipe(tmp_path):
    from dataset_files import write_cifar100

    write_cifar100(tmp_path)
    exp = load_experiment("experiments/split_cifar100.yaml",
                          [f"data.root={tmp_path}", "data.num_workers=0"]).variants["prd"]
    views = exp.data.views
    assert views.name == "crop_jitter" and views.count == 2
    assert views.params() == {"mean": MEAN, "std": STD}  # the recipe's values are the defaults
    assert exp.data.params().get("augment") is False  # the views hold the whole augmentation
    supcon = exp.objectives[0]
    assert exp.continual.first_task_extra_epochs == 120  # the authors' n_warmup_epochs
    assert supcon.name == "supcon" and supcon.params() == {
        "temperature": 0.1, "projection_layers": 3, "hidden_dim": 512}
    base = build_data(exp, 0)
    tasks = task_sequence(exp, base.num_classes, 0)
    module = build_module(exp, base, build_teacher(exp, base, None), task=0, tasks=tasks)
    linears = [m for m in module.objectives[0].projection if isinstance(m, torch.nn.Linear)]
    width = module.student(torch.zeros(2, 3, 32, 32)).features.shape[1]
    assert [(m.in_features, m.out_features) for m in linears] == [(width, 512), (512, 512),
                                                                  (512, 128)]


def test_the_first_task_trains_its_extra_epochs(tmp_path, capsys):
    path = tmp_path / "seq.yaml"
    path.write_text(SEQUENCE.replace("continual: {tasks: 3, setting: task-incremental}",
                                     "continual: {tasks: 3, setting: task-incremental, "
                                     "first_task_extra_epochs: 2}"))
    code, _, err = run_cli(["run", str(path), "--variant", "lwf", "--out", str(tmp_path / "runs")],
                           capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "runs" / "seq" / "lwf" / "seed0" /
                           "manifest.json").read_text())
    assert [entry["epochs"] for entry in manifest["completed"]] == [3, 1, 1]


# -- validation ---------------------------------------------------------------------------------

def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_more_tasks_than_classes_is_one_line_and_exit_2(tmp_path, sequence_file, capsys):
    text = sequence_file.read_text().replace("tasks: 3", "tasks: 11")
    sequence_file.write_text(text)
    out = tmp_path / "runs"
    for command in (["validate", str(sequence_file)], ["run", str(sequence_file), "--out",
                                                       str(out)]):
        code, _, err = run_cli(command, capsys)
        assert code == 2
        assert err.count("\n") == 1
        line = text.splitlines().index("continual: {tasks: 11, setting: task-incremental}") + 1
        assert err.startswith(f"{sequence_file}:{line}: continual.tasks: 11 tasks need")
    assert not out.exists()


SEQUENCE_LINE = "continual: {tasks: 3, setting: task-incremental}\n"
SNAPSHOT_LINE = "teacher: {role: snapshot}\n"


@pytest.mark.parametrize("removed, message", [
    ([SEQUENCE_LINE], "teacher.role: a snapshot teacher is the student at the end of the "
                      "previous task; it needs a `continual:` section"),
    ([SEQUENCE_LINE, SNAPSHOT_LINE], "objectives.1: prd learns a sequence of tasks"),
    ([SNAPSHOT_LINE], "objectives.1: prd distils from the model of the previous task"),
])
def test_sequence_parts_are_refused_without_each_other(sequence_file, capsys, removed, message):
    text = sequence_file.read_text()
    for line in removed:
        text = text.replace(line, "")
    sequence_file.write_text(text)
    code, _, err = run_cli(["validate", str(sequence_file)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(str(sequence_file)) and message in err


def test_the_split_cifar100_file_validates_on_a_tiny_cifar100(tmp_path, capsys):
    from dataset_files import write_cifar100

    write_cifar100(tmp_path)
    code, out, err = run_cli(["validate", "experiments/split_cifar100.yaml", "--set",
                              f"data.root={tmp_path}"], capsys)
    assert code == 0, err
    assert "variants finetune, lwf, prd" in out
    exp = load_experiment("experiments/split_cifar100.yaml",
                          [f"data.root={tmp_path}"]).variants["prd"]
    tasks = check_continual(exp, build_data(exp, 0))
    assert len(tasks) == 20 and all(len(group) == 5 for group in tasks.classes)


@pytest.mark.parametrize("name", ["split_mnist1d", "split_digits"])
def test_the_embedded_files_validate(name, capsys):
    code, out, err = run_cli(["validate", f"experiments/{name}.yaml"], capsys)
    assert code == 0, err
    ef = load_experiment(f"experiments/{name}.yaml")
    assert list(ef.variants) == ["finetune", "lwf", "prd"] and ef.base.seeds == [0, 1, 2]
    assert ef.base.continual.tasks == 5


# -- the manifest and the generators' state -----------------------------------------------------

def test_the_manifest_refuses_another_configuration(tmp_path):
    tasks = TaskSequence.split(10, 5)
    manifest = Manifest.open(tmp_path, "abc", tasks)
    manifest.record({"task": 0, "rows": {"cil": [50.0]}})
    again = Manifest.open(tmp_path, "abc", tasks)
    assert again.done(0) and not again.done(1)
    with pytest.raises(UserError, match="different configuration"):
        Manifest.open(tmp_path, "xyz", tasks)
    with pytest.raises(UserError, match="different configuration"):
        Manifest.open(tmp_path, "abc", TaskSequence.split(10, 2))
    (tmp_path / "manifest.json").write_text('{"config": "abc", "tas')
    with pytest.raises(UserError, match="cannot be read"):
        Manifest.open(tmp_path, "abc", tasks)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary file left


def test_generator_state_survives_a_weights_only_checkpoint():
    state = capture_rng()
    buffer = io.BytesIO()
    torch.save({"rng_state": state}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["rng_state"]
    draws = (random.random(), float(np.random.rand()), torch.rand(3))
    restore_rng(loaded)
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert draws[:2] == again[:2] and torch.equal(draws[2], again[2])


def test_the_heatmap_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from distill.continual.heatmap import save_heatmap

    matrices = {"til": AccuracyMatrix.of(HAND_R), "cil": AccuracyMatrix.of(HAND_R)}
    save_heatmap(matrices, tmp_path / "r.png", "hand")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == '["r.png"]'


def test_cross_entropy_within_a_task_needs_a_sequence(tmp_path, capsys):
    path = tmp_path / "plain.yaml"
    path.write_text("name: plain\ndata: {name: digits}\nstudent: {net: {name: mlp}}\n"
                    "objectives:\n  - {name: ce, within_task: true}\n")
    code, _, err = run_cli(["validate", str(path)], capsys)
    assert code == 2
    assert err == f"{path}:5: objectives.0: within_task: true needs a `continual:` section\n"


def test_without_matplotlib_the_heatmap_is_skipped_with_a_message(monkeypatch):
    from distill.continual.heatmap import matplotlib_missing

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert "pip install 'distill-workbench[plots]'" in matplotlib_missing()
