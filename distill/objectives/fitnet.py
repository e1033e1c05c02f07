"""FitNets hints (Romero et al. 2015, "FitNets: Hints for Thin Deep Nets"), as in mdistiller: per
layer pair, a learned regressor maps the student's map to the teacher's shape and

``L = sum_pairs MSE(r(f_s), f_t)``,

``r`` mdistiller's ``ConvReg``: a convolution (1 x 1 when the sizes are equal; 3 x 3 stride 2
when the student's map is twice the teacher's; a 4 x 4 stride-2 transposed convolution when
half; else a kernel of ``1 + s - t``), BatchNorm, ReLU; trained with the student. Weight 100 by
default (mdistiller's CIFAR-100 value). 1-d maps (B x C x L) use the 1-d layers."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from distill.errors import ConfigError
from distill.objectives.layer_pairs import LayerPairObjective, Pairs
from distill.registry import objectives


def regressor(student_shape, teacher_shape, relu: bool = True) -> nn.Sequential:
    """mdistiller's ConvReg from a B x C_s x S... map to a B x C_t x T... one (1-d or 2-d);
    raises ValueError when the student's map is smaller than the teacher's but not half."""
    two_d = len(student_shape) == 4
    conv, transposed, norm = ((nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d) if two_d
                              else (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d))
    c_s, c_t = student_shape[1], teacher_shape[1]
    s, t = tuple(student_shape[2:]), tuple(teacher_shape[2:])
    if s == tuple(2 * x for x in t):
        layer = conv(c_s, c_t, kernel_size=3, stride=2, padding=1)
    elif tuple(2 * x for x in s) == t:
        layer = transposed(c_s, c_t, kernel_size=4, stride=2, padding=1)
    elif all(a >= b for a, b in zip(s, t)):
        layer = conv(c_s, c_t, kernel_size=tuple(1 + a - b for a, b in zip(s, t)))
    else:
        raise ValueError(f"the student's map ({' x '.join(map(str, s))}) is smaller than the "
                         f"teacher's ({' x '.join(map(str, t))}) and not half its size")
    return nn.Sequential(layer, norm(c_t), *([nn.ReLU()] if relu else []))


@objectives.register("fitnet")
class FitNet(LayerPairObjective):
    """FitNets hints over layer pairs (``pairs: [[s2, t2]]``, mdistiller: the second stage's
    output), a learned regressor per pair, weight 100."""

    default_weight = 100.0

    def __init__(self, pairs: Pairs, relu: bool = True):
        super().__init__(pairs)
        self.relu = relu
        self.regressors = nn.ModuleList()

    def bind(self, ctx):
        super().bind(ctx)
        for i, (s, t) in enumerate(self.pairs):
            try:
                self.regressors.append(regressor(ctx.student.get(s).shape,
                                                 ctx.teacher.get(t).shape, self.relu))
            except ValueError as e:
                raise ConfigError(f"{ctx.key}.pairs.{i}", f"{e}; pair the student's layer with "
                                                          f"a teacher layer of its size or "
                                                          f"smaller") from None

    def forward(self, step):
        return sum(F.mse_loss(r(step.student.get(s)), step.teacher.get(t).detach())
                   for r, (s, t) in zip(self.regressors, self.pairs))
