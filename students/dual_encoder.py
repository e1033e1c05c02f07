"""Dual encoder for image-text retrieval: each side embedded once, scores are scaled cosines plus a
bias (CLIP's learnt scale, Radford et al. 2021; SigLIP's learnt bias, Zhai et al. 2023), so a
gallery is embedded once and each query costs one encoding and one matrix product. The bias does
not change any ranking or any softmax over candidates; it lets sigmoid and score-matching losses
(DCD's, against a cross encoder's logits) place the scores where they need them."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from distill.contracts import ModelOutput
from distill.registry import networks
from students.taps import Tapped
from students.towers import ImageTower, masked_mean, text_tower


class DualEncoder(nn.Module):
    """``forward(images, texts)``: L2-normalised ``embedding`` (images) and ``text_embedding``;
    ``score`` turns their cosines into scores, ``scale * cos + bias`` (learnt; CLIP's 1/0.07 and
    0 to start)."""

    fused = False

    def __init__(self, input_shape: tuple, vocab_size: int, text_length: int, image: str,
                 image_args: dict, text: str, dim: int, embed_dim: int, text_layers: int,
                 heads: int):
        super().__init__()
        self.image = ImageTower(image, image_args, input_shape, dim)
        self.text = text_tower(text, vocab_size, text_length, dim, text_layers, heads)
        self.image_head = nn.Linear(dim, embed_dim)
        self.text_head = nn.Linear(dim, embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.bias = nn.Parameter(torch.zeros(()))

    def score(self, image_embedding: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """Scores of embeddings that broadcast against each other (``... x E`` -> ``...``)."""
        scale = self.log_scale.clamp(max=math.log(100)).exp()
        return scale * (image_embedding * text_embedding).sum(-1) + self.bias

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
                 image_args: dict | None = None, text: str = "words", dim: int = 64,
                 embed_dim: int = 64, text_layers: int = 1, heads: int = 4) -> Tapped:
    """Dual encoder (retrieval): image tower (any network with tokens, default small_cnn) and a
    text tower (word-level transformer, or ``text:`` a local Hugging Face folder), each pooled and
    projected; scores are scaled cosines plus a bias."""
    return Tapped(DualEncoder(input_shape, vocab_size, text_length, image, image_args or {}, text,
                              dim, embed_dim, text_layers, heads), {})
