"""The two sides of a retrieval network: images to tokens through any registered network that
gives tokens (``small_cnn``, ``resnet18``, ...), captions to tokens through a small word-level
transformer; each also pooled to one vector."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from distill.contracts import ModelOutput
from distill.errors import ConfigError


class ImageTower(nn.Module):
    """Images -> tokens B x N x ``dim``: the ``tokens`` of the registered network ``backbone``
    (its feature map's positions), projected to ``dim``."""

    def __init__(self, backbone: str, backbone_args: dict, input_shape: tuple, dim: int):
        super().__init__()
        from students import build_network

        self.backbone = build_network(backbone, backbone_args, num_classes=1,
                                      input_shape=input_shape)
        with torch.no_grad():
            self.backbone.eval()
            probe = self.backbone(torch.zeros(1, *input_shape)).tokens
            self.backbone.train()
        if probe is None:
            raise ConfigError("net.image", f"network {backbone!r} gives no tokens (feature map) "
                                           f"for the image side; pick one with a tokens tap")
        self.project = nn.Linear(probe.shape[-1], dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.backbone(images).tokens)


class TextTower(nn.Module):
    """Token ids B x L (0 = padding) -> tokens B x L x ``dim``: word and position embeddings and
    ``layers`` transformer encoder layers; ``mask`` marks the real tokens."""

    def __init__(self, vocab_size: int, length: int, dim: int, layers: int, heads: int):
        super().__init__()
        self.words = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.positions = nn.Parameter(torch.zeros(1, length, dim))
        nn.init.normal_(self.positions, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = texts != 0
        mask[:, 0] |= ~mask.any(dim=1)  # an empty caption still attends to one position
        x = self.words(texts) + self.positions[:, :texts.shape[1]]
        return self.encoder(x, src_key_padding_mask=~mask), mask


def text_tower(text: str, vocab_size: int, length: int, dim: int, layers: int,
               heads: int) -> nn.Module:
    """``text: words``: the built-in word-level transformer; otherwise a local Hugging Face folder
    (the optional ``text`` extra), whose tokenizer the data must use too."""
    if text == "words":
        return TextTower(vocab_size, length, dim, layers, heads)
    from students.hf_text import HFTextTower

    return HFTextTower(text, dim, vocab_size)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the tokens (B x N x D -> B x D), over the real ones when ``mask`` is given."""
    if mask is None:
        return tokens.mean(dim=1)
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class TwoTowers(nn.Module):
    """An image tower and a text tower, each pooled, projected and L2-normalised:
    ``forward(images, texts)`` gives ``embedding`` and ``text_embedding``; ``scale`` (learnt,
    CLIP's 1/0.07 to start, at most 100) turns their cosines into scores. The dual and the cross
    encoder both build on it."""

    def __init__(self, input_shape: tuple, vocab_size: int, text_length: int, image: str,
                 image_args: dict, text: str, dim: int, embed_dim: int, text_layers: int,
                 heads: int):
        super().__init__()
        self.image = ImageTower(image, image_args, input_shape, dim)
        self.text = text_tower(text, vocab_size, text_length, dim, text_layers, heads)
        self.image_head = nn.Linear(dim, embed_dim)
        self.text_head = nn.Linear(dim, embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def score(self, image_embedding: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """``scale * cos`` of embeddings that broadcast against each other (``... x E``)."""
        scale = self.log_scale.clamp(max=math.log(100)).exp()
        return scale * (image_embedding * text_embedding).sum(-1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_head(masked_mean(self.image(images))), dim=-1)

    def encode_texts(self, texts: torch.Tensor) -> torch.Tensor:
        tokens, mask = self.text(texts)
        return F.normalize(self.text_head(masked_mean(tokens, mask)), dim=-1)

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> ModelOutput:
        return ModelOutput(embedding=self.encode_images(images),
                           text_embedding=self.encode_texts(texts))
