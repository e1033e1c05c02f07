"""Cross encoder for image-text retrieval: image patches and caption tokens attend to each other
in joint transformer layers, and a head scores the pair (ViLT / METER-style matching). It is
accurate and slow: every (image, caption) pair is one forward pass. Its single-modality towers
also give embeddings (ALBEF's contrastive head) that rank a gallery coarsely; the joint score then
re-ranks the top candidates."""
from __future__ import annotations

import torch
from torch import nn

from distill.registry import networks
from students.taps import Tapped
from students.towers import TwoTowers


class CrossEncoder(TwoTowers):
    """The towers' normalised ``embedding`` / ``text_embedding`` (scored by ``scale * cos``, the
    coarse ranking); ``joint(sides(images, texts), image_rows, text_rows)``: joint scores of any
    pairs of those items, each item's towers run once (``match``: the aligned pairs)."""

    fused = True

    def __init__(self, input_shape: tuple, vocab_size: int, text_length: int, image: str,
                 image_args: dict, text: str, dim: int, embed_dim: int, text_layers: int,
                 joint_layers: int, heads: int):
        super().__init__(input_shape, vocab_size, text_length, image, image_args, text, dim,
                         embed_dim, text_layers, heads)
        self.side = nn.Parameter(torch.zeros(2, dim))  # which modality a token comes from
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True)
        self.joint_layers = nn.TransformerEncoder(layer, joint_layers,
                                                  enable_nested_tensor=False)
        self.match_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1))

    def sides(self, images: torch.Tensor, texts: torch.Tensor):
        """What the joint layers read of each image and caption, computed once per item: image
        tokens, caption tokens and the caption mask."""
        return (self.image_side(images), *self.text_side(texts))

    def image_side(self, images: torch.Tensor) -> torch.Tensor:
        return self.image(images) + self.side[0]

    def text_side(self, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        text_tokens, mask = self.text(texts)
        return text_tokens + self.side[1], mask

    def joint(self, sides, image_rows: torch.Tensor, text_rows: torch.Tensor) -> torch.Tensor:
        """The joint score (a logit: relevant or not) of the pairs (image_rows[k], text_rows[k])
        of the items ``sides`` was computed for."""
        image_tokens, text_tokens, mask = sides
        image_tokens, text_tokens, mask = (image_tokens[image_rows], text_tokens[text_rows],
                                           mask[text_rows])
        cls = self.cls.expand(len(image_rows), -1, -1)
        tokens = torch.cat([cls, image_tokens, text_tokens], dim=1)
        keep = torch.cat([torch.ones(len(image_rows), 1 + image_tokens.shape[1],
                                     dtype=torch.bool, device=mask.device), mask], dim=1)
        return self.match_head(self.joint_layers(tokens, src_key_padding_mask=~keep)[:, 0])\
            .squeeze(-1)

    def match(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The joint score of each aligned (image, caption) pair, B."""
        rows = torch.arange(len(images), device=images.device)
        return self.joint(self.sides(images, texts), rows, rows)


@networks.register("cross_encoder")
def cross_encoder(input_shape: tuple, vocab_size: int, text_length: int, image: str = "small_cnn",
                  image_args: dict | None = None, text: str = "words", dim: int = 64,
                  embed_dim: int = 64, text_layers: int = 1, joint_layers: int = 2,
                  heads: int = 4) -> Tapped:
    """Cross encoder (retrieval): image patches and caption tokens (word-level, or ``text:`` a
    local Hugging Face folder) in joint transformer layers, a matching head per pair; its towers'
    embeddings rank a gallery coarsely for re-ranking."""
    return Tapped(CrossEncoder(input_shape, vocab_size, text_length, image, image_args or {}, text,
                               dim, embed_dim, text_layers, joint_layers, heads), {})
