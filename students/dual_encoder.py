"""Dual encoder for image-text retrieval: each side embedded once, scores are scaled cosines plus a
bias (CLIP's learnt scale, Radford et al. 2021; SigLIP's learnt bias, Zhai et al. 2023), so a
gallery is embedded once and each query costs one encoding and one matrix product. The bias does
not change any ranking or any softmax over candidates; it lets sigmoid and score-matching losses
(DCD's, against a cross encoder's logits) place the scores where they need them."""
from __future__ import annotations

import torch
from torch import nn

from distill.registry import networks
from students.taps import Tapped
from students.towers import TwoTowers


class DualEncoder(TwoTowers):
    """The towers' embeddings scored by ``scale * cos + bias`` (both learnt; 1/0.07 and 0 to
    start)."""

    fused = False

    def __init__(self, *args):
        super().__init__(*args)
        self.bias = nn.Parameter(torch.zeros(()))

    def score(self, image_embedding: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """Scores of embeddings that broadcast against each other (``... x E`` -> ``...``)."""
        return self.scaled_cosine(image_embedding, text_embedding) + self.bias


@networks.register("dual_encoder")
def dual_encoder(input_shape: tuple, vocab_size: int, text_length: int, image: str = "small_cnn",
                 image_args: dict | None = None, text: str = "words", dim: int = 64,
                 embed_dim: int = 64, text_layers: int = 1, heads: int = 4) -> Tapped:
    """Dual encoder (retrieval): image tower (any network with tokens, default small_cnn) and a
    text tower (word-level transformer, or ``text:`` a local Hugging Face folder), each pooled and
    projected; scores are scaled cosines plus a bias."""
    return Tapped(DualEncoder(input_shape, vocab_size, text_length, image, image_args or {}, text,
                              dim, embed_dim, text_layers, heads), {})
