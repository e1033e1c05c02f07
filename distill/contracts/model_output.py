"""The record every network returns: whatever it can give of logits, features, tokens,
embeddings."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

FIELDS = ("logits", "features", "tokens", "embedding", "text_embedding")


@dataclass
class ModelOutput:
    """One forward pass of a network.

    ``logits`` B x C; ``features`` B x D (penultimate, before the classifier); ``tokens`` B x N x D
    (last stage: ViT patch tokens or CNN feature-map positions); ``embedding`` B x E (retrieval:
    the image side) and ``text_embedding`` B x E (retrieval: the caption side), L2-normalised. A
    field is None when the network has no such output.
    """

    logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    text_embedding: torch.Tensor | None = None

    def detach(self) -> "ModelOutput":
        return ModelOutput(**{f.name: None if getattr(self, f.name) is None
                              else getattr(self, f.name).detach() for f in fields(self)})

    def available(self) -> set[str]:
        return {f.name for f in fields(self) if getattr(self, f.name) is not None}
