"""ND: regularising the student's feature norm and direction (Wang et al. 2023, "Improving
Knowledge Distillation via Regularizing Feature Norm and Direction").

``L_nd = (1/B) sum_i [1 - <f_s_i, e_{y_i}> / max(|f_s_i|, |f_t_i|)]``, ``e_k = c_k / |c_k|`` the
normalised class-mean of the teacher's penultimate features (:mod:`distill.objectives.class_means`).
While the student's feature norm is below the teacher's the loss pulls the norm up and the direction
toward the class-mean; above it, it is a cosine loss. Student features of another size than the
teacher's pass a trainable adapter ``BatchNorm1d -> Dropout(0.5) -> Linear(d_s, d_t)`` (the
authors' ``EmbTrans``, Linear bias zero-initialised), optimised with the student; the student's own
classifier still gives its logits. "KD++" is ``ce + kd (weight 3.5 or 1, warmup_epochs: 20) + nd``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.objectives.class_means import ClassMeans, file_digest, training_set_identity
from distill.registry import objectives


def nd_loss(student_features: torch.Tensor, teacher_features: torch.Tensor,
            class_means: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``1 - <f_s, e_y> / max(|f_s|, |f_t|)``; ``class_means`` is C x D (not yet
    normalised), the features B x D in the teacher's width. The teacher's norm and the
    class-means are targets: no gradient flows into them."""
    e = F.normalize(class_means[labels].detach(), dim=1)
    largest_norm = torch.maximum(student_features.norm(dim=1),
                                 teacher_features.detach().norm(dim=1))
    return (1 - (student_features * e).sum(dim=1) / largest_norm).mean()


def feature_adapter(d_student: int, d_teacher: int) -> nn.Sequential:
    """BatchNorm1d -> Dropout(0.5) -> Linear(d_s, d_t), Linear bias zero-initialised."""
    linear = nn.Linear(d_student, d_teacher)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.BatchNorm1d(d_student), nn.Dropout(0.5), linear)


@objectives.register("nd")
class NormDirection(Objective):
    """ND (KD++): student features toward the teacher's class-mean direction, norm up to the
    teacher's; ``adapter: false`` refuses feature sizes that differ instead of adapting them."""

    student_needs = frozenset({"features"})
    teacher_needs = frozenset({"features"})
    uses_labels = True

    def __init__(self, adapter: bool = True):
        super().__init__()
        self.allow_adapter = adapter
        self.adapter: nn.Module = nn.Identity()
        self.class_means: ClassMeans | None = None
        self._weights_file: str | None = None
        self._identity: dict = {}

    def bind(self, ctx):
        super().bind(ctx)
        if ctx.teacher_role is not None and ctx.teacher_role.trainable:
            raise ConfigError(ctx.key, "nd takes class-means of the teacher once before training, "
                                       "so it needs a teacher that does not train; use role: frozen")
        d_s, d_t = ctx.student.features.shape[1], ctx.teacher.features.shape[1]
        if d_s != d_t:
            if not self.allow_adapter:
                raise ConfigError(f"{ctx.key}.adapter",
                                  f"the student's features have {d_s} dimensions and the "
                                  f"teacher's {d_t}; allow the adapter (adapter: true) or pick "
                                  f"networks with the same feature size")
            self.adapter = feature_adapter(d_s, d_t)
        self.class_means = ClassMeans(ctx.num_classes, d_t)
        if ctx.teacher_weights is not None and ctx.experiment is not None:
            self._weights_file = ctx.teacher_weights
            self._identity = {"teacher_taps": ctx.teacher_role.network.taps,
                              "training_set": training_set_identity(ctx.experiment, ctx.data)}

    def on_fit_start(self, trainer, pl_module):
        """Class-means before the first step: restored, read from the cache, or computed."""
        cache_dir, identity = None, {}
        if self._weights_file is not None and not self.class_means.filled:
            cache_dir = Path(self._weights_file).parent
            identity = {"teacher_weights": file_digest(self._weights_file), **self._identity}
        self.class_means.fill(pl_module.teacher, trainer.datamodule, pl_module.device,
                              cache_dir, identity,
                              say=print if trainer.is_global_zero else lambda _: None)

    def forward(self, step):
        return nd_loss(self.adapter(step.student.features), step.teacher.features,
                       self.class_means.means, step.labels)
