"""Self-distillation with no labels: random-teacher distillation (Sarnthein et al. 2023, "Random
Teachers are Good Teachers") and, with an ``ema`` teacher and augmented views, DINO (Caron et al.
2021, "Emerging Properties in Self-Supervised Vision Transformers").

Both networks' encoder features go through a projection head (:class:`DinoHead`); the loss is
``H(p_t, p_s) = -sum_k p_t[k] log p_s[k]``, batch mean, with ``p_t = softmax((g_t - c) / tau_t)``
and ``p_s = softmax(g_s / tau_s)``. Random-teacher defaults: tau_s = tau_t = 1, no centering
(c = 0).
DINO: tau_s = 0.1, tau_t = 0.04 (warmed up to 0.07), centering with momentum 0.9:
``c <- m c + (1 - m) mean_batch(g_t)``, updated after the loss with the teacher outputs of the step.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from students.interpolate import interpolate_init
from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.objectives.dino_head import DinoHead
from distill.registry import objectives


def dino_loss(student_out: torch.Tensor, teacher_out: torch.Tensor, student_temp: float,
              teacher_temp: float, center: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy from softmax((teacher_out - center) / teacher_temp) (a target: no gradient) to
    softmax(student_out / student_temp), summed over outputs, mean over the batch."""
    target = teacher_out.detach() if center is None else teacher_out.detach() - center
    p_t = F.softmax(target / teacher_temp, dim=-1)
    return -(p_t * F.log_softmax(student_out / student_temp, dim=-1)).sum(dim=-1).mean()


@objectives.register("dino")
class Dino(Objective):
    """Random-teacher self-distillation / DINO: projection heads on both encoders, cross-entropy
    between the teacher's and the student's softmax. No labels.

    The student head is trained with the student. The teacher head follows the teacher role, like
    the teacher network: frozen at its random initialisation for ``random``/``frozen`` (and the
    student head starts from it as the student network does: ``student.init``), a momentum copy of
    the student head for ``ema``.

    Without ``data.views`` the same input goes to both networks (the random-teacher setting). With
    views, the teacher sees the first ``global_views`` views, the student all of them, and every
    (teacher view, other student view) pair contributes equally (DINO's multi-crop loss; all views
    here come from one augmentation at the input's size).

    ``center_momentum`` (None: no centering) switches on DINO's centering; ``warmup_teacher_temp``
    starts tau_t there and moves it linearly to ``teacher_temp`` over
    ``warmup_teacher_temp_epochs``.
    Paper head sizes are the defaults (``out_dim`` K = 65536, ``hidden`` 2048, ``bottleneck`` 256).
    """

    student_needs = frozenset({"features"})
    teacher_needs = frozenset({"features"})

    def __init__(self, out_dim: int = 65536, hidden: int = 2048, bottleneck: int = 256,
                 student_temp: float = 1.0, teacher_temp: float = 1.0,
                 center_momentum: float | None = None, warmup_teacher_temp: float | None = None,
                 warmup_teacher_temp_epochs: int = 0, global_views: int = 2):
        super().__init__()
        self.sizes = dict(out_dim=out_dim, hidden=hidden, bottleneck=bottleneck)
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.center_momentum = center_momentum
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.global_views = global_views
        self.register_buffer("center", torch.zeros(out_dim))

    def bind(self, ctx):
        # views are used when the data has them; without, one input goes to both networks
        self.uses_views = ctx.data is not None and ctx.data.has_views
        super().bind(ctx)
        if self.uses_views:
            count = ctx.data.views[1]
            if count < 2 or not 1 <= self.global_views <= count:
                raise ConfigError(ctx.key, f"dino pairs each teacher view with the other views: it "
                                           f"needs data.views.count >= 2 and 1 <= global_views <= "
                                           f"count (count {count}, global_views "
                                           f"{self.global_views})")
        self.teacher_head = DinoHead(ctx.teacher.features.shape[1], **self.sizes)
        self.head = DinoHead(ctx.student.features.shape[1], **self.sizes)
        init = ctx.experiment.student.init if ctx.experiment is not None else None
        if init is not None and init.from_ == "teacher":
            interpolate_init(self.head, self.teacher_head, init.alpha)
        self.teacher_head.requires_grad_(False)
        ctx.teacher_role.track(self.teacher_head, self.head)

    def teacher_temp_at(self, epoch: int) -> float:
        if self.warmup_teacher_temp is None or epoch >= self.warmup_teacher_temp_epochs:
            return self.teacher_temp
        share = epoch / self.warmup_teacher_temp_epochs
        return self.warmup_teacher_temp + share * (self.teacher_temp - self.warmup_teacher_temp)

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """c <- m c + (1 - m) mean(g_t), the mean over the batch of every rank."""
        batch_center = teacher_out.mean(dim=0)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            batch_center /= dist.get_world_size()
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)

    def forward(self, step):
        if step.student_views is None:
            students, teachers = [step.student.features], [step.teacher.features]
            pairs = [(0, 0)]
        else:
            students = [view.features for view in step.student_views]
            teachers = [view.features for view in step.teacher_views[:self.global_views]]
            pairs = [(t, s) for t in range(len(teachers)) for s in range(len(students)) if s != t]
        g_s = self.head(torch.cat(students)).chunk(len(students))
        with torch.no_grad():
            g_t = self.teacher_head(torch.cat(teachers))
        center = self.center if self.center_momentum is not None else None
        tau_t = self.teacher_temp_at(step.epoch)
        g_t_views = g_t.chunk(len(teachers))
        loss = sum(dino_loss(g_s[s], g_t_views[t], self.student_temp, tau_t, center)
                   for t, s in pairs) / len(pairs)
        if center is not None and self.training:
            self.update_center(g_t)
        return loss
