"""Supervised contrastive learning (Khosla et al. 2020, "Supervised Contrastive Learning").

Every augmented view of every sample is an anchor; the other views with the same label are its
positives. With ``z`` the L2-normalised projections (M rows) and ``tau`` the temperature, the
paper's L^sup_out (its Eq. 2):

``L = (1/|A|) sum_{i in A} -(1/|P(i)|) sum_{p in P(i)} log[exp(z_i.z_p/tau) / Z_i]``,
``Z_i = sum_{a != i} exp(z_i.z_a/tau)``

with ``P(i)`` the positives of i and ``A`` the anchors that have one. SupContrast's code (and PRD's)
multiplies this by ``tau / 0.07``; an objective ``weight`` of ``tau / 0.07`` reproduces that.
"""
import torch
import torch.nn.functional as F
from torch import nn

from distill.objectives.base import Objective
from distill.registry import objectives


def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor,
                temperature: float = 0.1) -> torch.Tensor:
    """L^sup_out over the rows of ``embeddings`` (M x D, normalised here) with ``labels`` (M)."""
    z = F.normalize(embeddings, dim=1)
    self_pair = torch.eye(len(z), dtype=torch.bool, device=z.device)
    similarity = (z @ z.T / temperature).masked_fill(self_pair, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_pair
    count = positive.sum(dim=1)
    anchor = count > 0
    if not anchor.any():
        return embeddings.sum() * 0.0
    per_anchor = torch.where(positive, log_prob, 0.0).sum(dim=1)[anchor] / count[anchor]
    return -per_anchor.mean()


@objectives.register("supcon")
class SupCon(Objective):
    """Supervised contrastive loss on projected student features of the augmented views.

    Projection: MLP d -> hidden (default d) -> ReLU -> projection_dim (default 128); tau = 0.1
    (PRD's value)."""

    student_needs = frozenset({"features"})
    uses_labels = True
    uses_views = True

    def __init__(self, temperature: float = 0.1, projection_dim: int = 128,
                 hidden_dim: int | None = None):
        super().__init__()
        self.temperature, self.projection_dim, self.hidden_dim = (temperature, projection_dim,
                                                                  hidden_dim)

    def bind(self, ctx):
        super().bind(ctx)
        width = ctx.student.features.shape[1]
        hidden = self.hidden_dim or width
        self.projection = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, self.projection_dim))

    def forward(self, step):
        features = torch.cat([view.features for view in step.student_views])
        labels = step.labels.repeat(len(step.student_views))
        return supcon_loss(self.projection(features), labels, self.temperature)
