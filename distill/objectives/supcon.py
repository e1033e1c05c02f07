"""Supervised contrastive learning (Khosla et al. 2020, "Supervised Contrastive Learning").

Every augmented view of every sample is an anchor; the other views with the same label are its
positives. With ``z`` the L2-normalised projections (M rows) and ``tau`` the temperature, the
paper's L^sup_out (its Eq. 2):

``L = (1/|A|) sum_{i in A} -(1/|P(i)|) sum_{p in P(i)} log[exp(z_i.z_p/tau) / Z_i]``,
``Z_i = sum_{a != i} exp(z_i.z_a/tau)``

with ``P(i)`` the positives of i and ``A`` the anchors that have one, multiplied by
``tau / base_temperature`` as in SupContrast's code (Khosla et al.'s ``SupConLoss``) and PRD's copy
of it: ``base_temperature`` defaults to their 0.07, so at PRD's tau = 0.1 the loss is 0.1 / 0.07 =
1.43 times the paper's Eq. 2 (this sets the balance with PRD's weighted terms 2 L_p and 4 L_prd);
``base_temperature`` equal to ``temperature`` gives Eq. 2 itself.

Projection head (``projection_layers`` Linear layers, ReLU between them, no BatchNorm): 2 layers
``d -> hidden -> projection_dim`` by default; the PRD authors use 3 (``d -> 512 -> 512 -> 128``,
their ``ProjectionMLP`` with ``num_layers=3`` and ``projection_hidden_size=512``).
"""
import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import ConfigError
from distill.objectives.base import Objective
from distill.registry import objectives


def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
                base_temperature: float = 0.07) -> torch.Tensor:
    """``(temperature / base_temperature) * L^sup_out`` over the rows of ``embeddings`` (M x D,
    normalised here) with ``labels`` (M); the factor is SupContrast's (base 0.07)."""
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
    return -(temperature / base_temperature) * per_anchor.mean()


@objectives.register("supcon")
class SupCon(Objective):
    """Supervised contrastive loss on projected student features of the augmented views.

    Projection: ``projection_layers`` Linear layers with ReLU between them, d -> hidden (default d)
    [-> hidden ...] -> projection_dim (default 128); 2 layers by default, the PRD authors' 3 with
    ``hidden_dim: 512``. tau = 0.1 (PRD's value); the loss is scaled by ``temperature /
    base_temperature`` (SupContrast's factor, base 0.07)."""

    student_needs = frozenset({"features"})
    relates_samples = True
    uses_labels = True
    uses_views = True

    def __init__(self, temperature: float = 0.1, base_temperature: float = 0.07,
                 projection_dim: int = 128, hidden_dim: int | None = None,
                 projection_layers: int = 2):
        super().__init__()
        self.temperature, self.base_temperature = temperature, base_temperature
        self.projection_dim, self.hidden_dim = projection_dim, hidden_dim
        self.projection_layers = projection_layers

    def bind(self, ctx):
        super().bind(ctx)
        if self.projection_layers < 1:
            raise ConfigError(ctx.key, f"projection_layers is a number of Linear layers, at least "
                                       f"1, got {self.projection_layers}")
        width = ctx.student.features.shape[1]
        hidden = self.hidden_dim or width
        widths = [width] + [hidden] * (self.projection_layers - 1) + [self.projection_dim]
        layers: list[nn.Module] = []
        for k, (cin, cout) in enumerate(zip(widths, widths[1:])):
            if k:
                layers.append(nn.ReLU(inplace=True))
            layers.append(nn.Linear(cin, cout))
        self.projection = nn.Sequential(*layers)

    def forward(self, step):
        features = torch.cat([view.features for view in step.student_views])
        labels = step.labels.repeat(len(step.student_views))
        return supcon_loss(self.projection(features), labels, self.temperature,
                           self.base_temperature)
