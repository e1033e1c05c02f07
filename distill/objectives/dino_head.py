"""The DINO projection head (Caron et al. 2021), as used by Sarnthein et al. 2023, "Random Teachers
are Good Teachers".

``g(f) = W_hat (z / |z|)``, ``z = Linear(GELU(Linear(GELU(Linear(f)))))``: an MLP
d -> hidden -> hidden (GELU, no BatchNorm), a linear map to the bottleneck, L2 normalisation, and a
weight-normalised linear layer to K outputs whose weight vector per output has unit norm
(``W_hat_k = W_k / |W_k|``, i.e. weight norm with the gain fixed at 1, DINO's ``norm_last_layer``),
so every output is a cosine similarity in [-1, 1]. Paper sizes: hidden 2048, bottleneck 256,
K = 65536. The MLP starts from DINO's init (truncated normal, std 0.02, zero bias); the last layer
from PyTorch's default Linear init, as in DINO.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DinoHead(nn.Module):
    """MLP -> L2-normalised bottleneck -> unit-norm linear layer to ``out_dim`` outputs."""

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden: int = 2048,
                 bottleneck: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = nn.Linear(bottleneck, out_dim, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(features), dim=-1)
        return F.linear(z, F.normalize(self.last_layer.weight, dim=1))
