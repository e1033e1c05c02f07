"""Dual encoder for image-text retrieval: each side embedded once, scores are scaled cosines
(CLIP, Radford et al. 2021), so a gallery is embedded once and each query costs one encoding and
one matrix product."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from distill.contracts import ModelOutput
from distill.registry import networks
from students.taps import Tapped
from students.towers import ImageTower, TextTower, masked_mean


class DualEncoder(nn.Module):
    """``forward(images, texts)``: L2-normalised ``embedding`` (images) and ``text_embedding``;
    ``scale`` (learnt, CLIP's 1/0.07 to start) turns their cosines into scores."""

    fused = False

    def __init__(self, input_shape: tuple, vocab_size: int, text_length: int, image: str,
                 image_args: dict, dim: int, embed_dim: int, text_layers: int, heads: int):
        super().__init__()
        self.image = ImageTower(image, image_args, input_shape, dim)
        self.text = TextTower(vocab_size, text_length, dim, text_layers, heads)
        self.image_head = nn.Linear(dim, embed_dim)
        self.text_head = nn.Linear(dim, embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(100)).exp()

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_head(masked_mean(self.image(images))), dim=-1)

    def encode_texts(self, texts: torch.Tensor) -> torch.Tensor:
        tokens, mask = self.text(texts)
        return F.normalize(self.text_head(masked_mean(tokens, mask)), dim=-1)

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> ModelOutput:
        return ModelOutput(embedding=self.encode_images(images),
                           text_embedding=self.encode_texts(texts))


@networks.register("dual_encoder")
def dual_encoder(input_shape: tuple, vocab_size: int, text_length: int, image: str = "small_cnn",
                 image_args: dict | None = None, dim: int = 64, embed_dim: int = 64,
                 text_layers: int = 1, heads: int = 4) -> Tapped:
    """Dual encoder (retrieval): image tower (any network with tokens, default small_cnn) and a
    word-level text transformer, each pooled and projected; scores are scaled cosines."""
    return Tapped(DualEncoder(input_shape, vocab_size, text_length, image, image_args or {}, dim,
                              embed_dim, text_layers, heads), {})
