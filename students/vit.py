"""A small Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"), sized for
CIFAR (3 x 32 x 32, patch 4 -> 64 patch tokens) and the 8 x 8 digits (patch 2 -> 16 tokens).

Patch embedding (a strided convolution), a learnable class token and position embedding, ``depth``
pre-norm blocks ``x = x + MHSA(LN(x)); x = x + MLP(LN(x))``, a final LayerNorm, and a linear
classifier on the class token. ``features`` is the class token after the final norm (the
classifier's input); ``tokens`` are the patch tokens after the final norm, class token dropped
(B x N x dim, row-major over the patch grid like a CNN feature map's positions).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import UserError
from distill.registry import networks
from students.taps import Tapped


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: attention and MLP, each behind a LayerNorm and a residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, num_classes: int, channels: int, image_size: tuple[int, int],
                 patch_size: int, dim: int, depth: int, heads: int, mlp_ratio: float):
        super().__init__()
        grid = (image_size[0] // patch_size) * (image_size[1] // patch_size)
        self.patch_embed = nn.Conv2d(channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)  # B x N x dim
        cls = self.cls_token.expand(len(x), -1, -1)
        x = self.norm(self.blocks(torch.cat([cls, patches], dim=1) + self.pos_embed))
        return self.head(x[:, 0])


@networks.register("vit_tiny")
def vit_tiny(num_classes: int, input_shape: tuple, patch_size: int = 4, dim: int = 192,
             depth: int = 12, heads: int = 3, mlp_ratio: float = 4.0) -> Tapped:
    """ViT on small images: patch tokens, class token, pre-norm blocks (defaults: ViT-Tiny widths)."""
    if len(input_shape) != 3:
        raise UserError(f"vit_tiny takes images (C x H x W); this dataset's inputs have shape "
                        f"{tuple(input_shape)}")
    channels, height, width = input_shape
    if height % patch_size or width % patch_size:
        raise UserError(f"vit_tiny: the {height} x {width} images do not divide into "
                        f"{patch_size} x {patch_size} patches; pick a patch_size that divides both")
    if dim % heads:
        raise UserError(f"vit_tiny: dim {dim} is not divisible by heads {heads}")
    net = VisionTransformer(num_classes, channels, (height, width), patch_size, dim, depth, heads,
                            mlp_ratio)
    return Tapped(net, {"features": "head:input", "tokens": "norm[1:]"})
