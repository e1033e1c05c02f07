"""TRG: knowledge distillation via a token-level relationship graph (Zhang et al. 2023).

Tokens are the last stage's ViT patch tokens or CNN feature-map positions (B x N x D), from the
``tokens`` field of both networks. A random subset of ``m`` positions per image (the same positions
for teacher and student) is taken, the student's tokens pass a trainable linear projection to the
teacher's width, and over the N = B*m tokens of the batch (``t_i`` teacher, ``s_i`` student):

- edge (local): the teacher's k-nearest-neighbour graph; on its edges ``A_ij = exp(-|x_i - x_j|^2 /
  (2 sigma))`` for teacher and student alike; ``mean_i KL(sm_j(A^T_i.) || sm_j(A^S_i.))``.
- node (global): InfoNCE, student token i picks teacher token i among all N:
  ``-log exp(cos(s_i, t_i)/tau) / sum_j exp(cos(s_i, t_j)/tau)``.
- context (within one image): ``CS = sm(F F^T / sqrt(D))`` over the image's tokens, for teacher
  and student; ``MSE(CS_t, CS_s)``.

Each term is returned (and logged) already multiplied by its weight (``edge``, ``node``,
``context``; a term of weight 0 is not computed). The paper's total adds ``ce + w_kd * kd``: list
those objectives beside ``trg``. No official code is public; the open choices, all parameters:

- ``k = 8`` neighbours, chosen on the teacher's graph (excluding the token itself), used for both.
- ``sigma = None``: each graph's own median squared distance over all pairs i != j, treated as a
  constant (no gradient); a number fixes sigma for both graphs.
- ``tau`` decays from ``tau_max = 0.5`` to ``tau_min = 0.07`` on a cosine schedule over the epochs:
  ``tau_min + (tau_max - tau_min) (1 + cos(pi e / (E - 1))) / 2`` at epoch e of E.
- ``tokens_per_image = 16`` positions drawn uniformly without repetition per image and step (all
  positions, in order, when None or at least N).
- Token counts that differ: the student's tokens are resampled to the teacher's count before the
  subset is drawn, so position i means the same image region in both. A count that is a perfect
  square is read as a square row-major grid (CNN maps, ViT patches), any other as a sequence
  (1-d CNNs); a finer student grid is average-pooled, a coarser one bilinearly (linearly)
  interpolated. The projection is applied after resampling (both are linear, so the order does not
  change the result).
- The contextual loss uses the projected student tokens, so D is the teacher's width for both.
- Under DDP each process builds the graphs and the InfoNCE over its own batch (N = local B*m).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.registry import objectives


def match_token_count(tokens: torch.Tensor, count: int) -> torch.Tensor:
    """B x N x D tokens resampled to B x ``count`` x D: square counts as square grids (average
    pooling down, bilinear up), other counts as sequences (average pooling down, linear up)."""
    b, n, d = tokens.shape
    if n == count:
        return tokens
    side, target = math.isqrt(n), math.isqrt(count)
    if side * side == n and target * target == count:
        grid = tokens.transpose(1, 2).reshape(b, d, side, side)
        grid = (F.adaptive_avg_pool2d(grid, target) if n > count else
                F.interpolate(grid, size=(target, target), mode="bilinear", align_corners=False))
        return grid.flatten(2).transpose(1, 2)
    seq = tokens.transpose(1, 2)
    seq = (F.adaptive_avg_pool1d(seq, count) if n > count else
           F.interpolate(seq, size=count, mode="linear", align_corners=False))
    return seq.transpose(1, 2)


def pick_tokens(count: int, per_image: int | None, batch: int, device=None) -> torch.Tensor:
    """B x m positions: ``per_image`` distinct random positions of ``count`` for each image, or
    all positions in order when ``per_image`` is None or not below ``count``."""
    if per_image is None or per_image >= count:
        return torch.arange(count, device=device).expand(batch, count)
    return torch.rand(batch, count, device=device).argsort(dim=1)[:, :per_image]


def take_tokens(tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The tokens at ``positions`` (B x m) of each image: B x m x D."""
    return tokens.gather(1, positions.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def squared_distances(x: torch.Tensor) -> torch.Tensor:
    """N x N matrix of ``|x_i - x_j|^2``."""
    sq = x.pow(2).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp(min=0)


def median_squared_distance(distances: torch.Tensor) -> torch.Tensor:
    """(Lower) median of the off-diagonal entries of a symmetric N x N distance matrix, without
    gradient; read from the upper triangle, which holds each pair once and has the same median."""
    i, j = torch.triu_indices(len(distances), len(distances), 1, device=distances.device)
    return distances.detach()[i, j].median().clamp(min=1e-12)


def edge_loss(student: torch.Tensor, teacher: torch.Tensor, k: int = 8,
              sigma: float | None = None) -> torch.Tensor:
    """``mean_i KL(sm_j(A^T_ij) || sm_j(A^S_ij))`` over j in the teacher's k nearest neighbours of
    i, ``A_ij = exp(-|x_i - x_j|^2 / (2 sigma))``; tokens N x D (student already projected)."""
    n = len(teacher)
    d_t, d_s = squared_distances(teacher), squared_distances(student)
    self_loops = torch.eye(n, dtype=torch.bool, device=teacher.device)
    neighbours = d_t.masked_fill(self_loops, float("inf")).topk(min(k, n - 1), dim=1,
                                                                  largest=False).indices
    sigma_t = median_squared_distance(d_t) if sigma is None else sigma
    sigma_s = median_squared_distance(d_s) if sigma is None else sigma
    log_p_t = torch.exp(-d_t.gather(1, neighbours) / (2 * sigma_t)).log_softmax(dim=1)
    log_p_s = torch.exp(-d_s.gather(1, neighbours) / (2 * sigma_s)).log_softmax(dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()


def node_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE: student token i picks teacher token i among all N by cosine similarity / tau."""
    logits = F.normalize(student, dim=1) @ F.normalize(teacher, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(student), device=student.device))


def context_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``MSE(sm(F_t F_t^T / sqrt(D_t)), sm(F_s F_s^T / sqrt(D_s)))`` per image; tokens B x m x D."""
    def relations(f: torch.Tensor) -> torch.Tensor:
        return torch.softmax(f @ f.transpose(1, 2) / math.sqrt(f.shape[-1]), dim=-1)

    return F.mse_loss(relations(student), relations(teacher))


def node_temperature(epoch: int, epochs: int, tau_max: float, tau_min: float) -> float:
    """Cosine decay from ``tau_max`` at the first epoch to ``tau_min`` at the last."""
    progress = epoch / max(1, epochs - 1)
    return tau_min + (tau_max - tau_min) * 0.5 * (1 + math.cos(math.pi * progress))


@objectives.register("trg")
class TokenRelationGraph(Objective):
    """TRG: edge (kNN-graph KL), node (InfoNCE) and contextual (within-image) losses on tokens."""

    student_needs = frozenset({"tokens"})
    relates_samples = True
    teacher_needs = frozenset({"tokens"})

    def __init__(self, edge: float = 1.0, node: float = 1.0, context: float = 1.0, k: int = 8,
                 sigma: float | None = None, tau_max: float = 0.5, tau_min: float = 0.07,
                 tokens_per_image: int | None = 16):
        super().__init__()
        self.edge, self.node, self.context = edge, node, context
        self.k, self.sigma = k, sigma
        self.tau_max, self.tau_min = tau_max, tau_min
        self.tokens_per_image = tokens_per_image
        self.projection: nn.Module = nn.Identity()

    def bind(self, ctx):
        for who, out in (("student", ctx.student), ("teacher", ctx.teacher)):
            if out is not None and out.tokens is None:
                raise ConfigError(ctx.key, f"trg relates tokens (B x N x D), but the {who}'s "
                                           f"network gives none; add `taps: {{tokens: <module>}}` "
                                           f"to {who}.net or pick a network with tokens (vit_tiny, "
                                           f"small_cnn, cnn1d, the CIFAR ResNets)")
        super().bind(ctx)
        checks = [("k", self.k >= 1, "must be at least 1"),
                  ("tau_min", 0 < self.tau_min <= self.tau_max, "must be above 0 and at most "
                                                                "tau_max"),
                  ("sigma", self.sigma is None or self.sigma > 0, "must be above 0 (or null: "
                                                                  "the median squared distance)"),
                  ("tokens_per_image", self.tokens_per_image is None or self.tokens_per_image >= 1,
                   "must be at least 1 (or null: every token)")]
        checks += [(name, getattr(self, name) >= 0, "a weight must not be negative")
                   for name in ("edge", "node", "context")]
        for name, ok, message in checks:
            if not ok:
                raise ConfigError(f"{ctx.key}.{name}", message)
        if not (self.edge or self.node or self.context):
            raise ConfigError(ctx.key, "edge, node and context are all 0; give one a weight")
        self.projection = nn.Linear(ctx.student.tokens.shape[-1], ctx.teacher.tokens.shape[-1])

    def forward(self, step):
        teacher = step.teacher.tokens
        student = match_token_count(step.student.tokens, teacher.shape[1])
        positions = pick_tokens(teacher.shape[1], self.tokens_per_image, teacher.shape[0],
                                teacher.device)
        teacher = take_tokens(teacher, positions)
        student = self.projection(take_tokens(student, positions))
        terms = {}
        if self.context:
            terms["context"] = self.context * context_loss(student, teacher)
        student, teacher = student.flatten(0, 1), teacher.flatten(0, 1)
        if self.edge:
            terms["edge"] = self.edge * edge_loss(student, teacher, self.k, self.sigma)
        if self.node:
            tau = node_temperature(step.epoch, step.max_epochs, self.tau_max, self.tau_min)
            terms["node"] = self.node * node_loss(student, teacher, tau)
        return terms
