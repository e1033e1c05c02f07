"""Dual encoder for image-text retrieval: each side embedded once, scores are scaled cosines
(CLIP's learnt scale, Radford et al. 2021), so a gallery is embedded once and each query costs one
encoding and one matrix product."""
from __future__ import annotations

from distill.registry import networks
from students.taps import Tapped
from students.towers import TwoTowers


class DualEncoder(TwoTowers):
    """Scores are the towers' ``scale * cos``: no joint pass."""

    fused = False


@networks.register("dual_encoder")
def dual_encoder(input_shape: tuple, vocab_size: int, text_length: int, image: str = "small_cnn",
                 image_args: dict | None = None, text: str = "words", dim: int = 64,
                 embed_dim: int = 64, text_layers: int = 1, heads: int = 4) -> Tapped:
    """Dual encoder (retrieval): image tower (any network with tokens, default small_cnn) and a
    text tower (word-level transformer, or ``text:`` a local Hugging Face folder), each pooled and
    projected; scores are scaled cosines."""
    return Tapped(DualEncoder(input_shape, vocab_size, text_length, image, image_args or {}, text,
                              dim, embed_dim, text_layers, heads), {})
