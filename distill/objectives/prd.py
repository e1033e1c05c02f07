"""Prototype-sample relation distillation (Asadi et al. 2023, "Prototype-Sample Relation
Distillation: Towards Replay-Free Continual Learning"), continual learning without stored samples.

The representation ``h`` (the student's features) is learnt by supervised contrastive learning on
two views (the ``supcon`` objective, listed beside this one). This objective adds:

- prototypes: one bias-free linear head per task, rows ``p_c`` in h-space; on the current task's
  classes, with the features detached, ``L_p = mean_i [1 - cos(h_i, p_{y_i})]``;
- relation distillation, for every earlier task t': scores ``s_ic = <h_i, p_c / |p_c|>`` over that
  task's prototypes, "old" from the frozen snapshot of the previous model and of its prototypes,
  "new" from the current model and the current (still trained) prototypes:
  ``L_prd = sum_t' KL( sm(s_old / T) || sm(s_new / T) )``, T = 1. ``over: prototypes`` (default, the
  authors' code) takes each sample's softmax over the prototypes, mean over samples; ``over:
  samples`` (the paper's text) each prototype's softmax over the batch, mean over prototypes (the
  mean is our choice). The code writes the cross-entropy, which differs from the KL by a constant
  (same gradients).

The terms returned are already weighted with the authors' defaults: ``prototypes = 2 L_p``,
``relation = 4 L_prd`` (total with supcon: ``supcon + 2 L_p + 4 L_prd``); both are computed on
every view. The prototypes train with their own optimiser options as in the authors' code (lr
0.01, no momentum, no weight decay). Prediction: the cosine of the normalised features to every
normalised prototype; the evaluation takes the task's classes (task-incremental) or every seen
class (class-incremental).
"""
import copy
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from distill.objectives.base import Objective
from distill.registry import objectives
from teachers.snapshot import require_snapshot


def relation_scores(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``s_ic = <h_i, p_c / |p_c|>`` (B x K) for features B x D and prototypes K x D."""
    return features @ F.normalize(prototypes, dim=1).T


def prd_loss(old_scores: torch.Tensor, new_scores: torch.Tensor, temperature: float = 1.0,
             over: Literal["prototypes", "samples"] = "prototypes") -> torch.Tensor:
    """``KL(sm(old / T) || sm(new / T))`` for B x K scores; the softmax runs over the prototypes
    (dim 1, mean over samples) or over the samples (dim 0, mean over prototypes)."""
    dim = 1 if over == "prototypes" else 0
    log_old = F.log_softmax(old_scores / temperature, dim=dim)
    log_new = F.log_softmax(new_scores / temperature, dim=dim)
    return (log_old.exp() * (log_old - log_new)).sum(dim=dim).mean()


@objectives.register("prd")
class PRD(Objective):
    """PRD: prototypes per task (2 L_p) and prototype-sample relation distillation (4 L_prd)."""

    student_needs = frozenset({"features"})
    teacher_needs = frozenset({"features"})
    uses_labels = True
    uses_views = True

    def __init__(self, temperature: float = 1.0,
                 over: Literal["prototypes", "samples"] = "prototypes",
                 prototype_weight: float = 2.0, relation_weight: float = 4.0,
                 prototype_lr: float | None = 0.01):
        super().__init__()
        self.temperature, self.over = temperature, over
        self.prototype_weight, self.relation_weight = prototype_weight, relation_weight
        self.prototype_lr = prototype_lr
        self.relates_samples = over == "samples"  # each prototype's softmax over the batch

    def bind(self, ctx):
        require_snapshot(ctx, "prd")
        super().bind(ctx)
        width = ctx.student.features.shape[1]
        tasks = ctx.tasks
        self.prototypes = nn.ModuleList(nn.Linear(width, len(group), bias=False)
                                        for group in tasks.classes)
        self.old_prototypes = copy.deepcopy(self.prototypes).requires_grad_(False)
        ctx.teacher_role.track(self.old_prototypes, self.prototypes)
        position = torch.zeros(tasks.num_classes, dtype=torch.long)  # a class's row in its head
        for group in tasks.classes:
            position[list(group)] = torch.arange(len(group))
        self.register_buffer("position", position, persistent=False)
        self.register_buffer("order", torch.tensor([c for g in tasks.classes for c in g]),
                             persistent=False)  # the class of each row of all heads stacked

    def param_groups(self):
        if self.prototype_lr is None:
            return []
        return [{"params": list(self.prototypes.parameters()), "lr": self.prototype_lr,
                 "momentum": 0.0, "weight_decay": 0.0}]

    def forward(self, step):
        features = torch.cat([view.features for view in step.student_views])
        labels = step.labels.repeat(len(step.student_views))
        current = self.prototypes[step.task].weight[self.position[labels]]
        prototype = (1 - F.cosine_similarity(features.detach(), current, dim=1)).mean()
        relation = features.new_zeros(())
        if step.task > 0:
            old_features = torch.cat([view.features for view in step.teacher_views])
            for t in range(step.task):
                relation = relation + prd_loss(
                    relation_scores(old_features, self.old_prototypes[t].weight),
                    relation_scores(features, self.prototypes[t].weight),
                    self.temperature, self.over)
        return {"prototypes": self.prototype_weight * prototype,
                "relation": self.relation_weight * relation}

    def predict(self, student):
        stacked = torch.cat([head.weight for head in self.prototypes])
        cosine = F.normalize(student.features, dim=1) @ F.normalize(stacked, dim=1).T
        scores = torch.empty_like(cosine)
        scores[:, self.order] = cosine
        return scores
