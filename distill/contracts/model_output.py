"""The record every network returns: whatever it can give of logits, features, tokens,
embeddings, and any layers the experiment file taps by name."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

FIELDS = ("logits", "features", "tokens", "embedding", "text_embedding")


@dataclass
class ModelOutput:
    """One forward pass of a network.

    ``logits`` B x C; ``features`` B x D (penultimate, before the classifier); ``tokens`` B x N x D
    (last stage: ViT patch tokens or CNN feature-map positions); ``embedding`` B x E (retrieval:
    the image side) and ``text_embedding`` B x E (retrieval: the caption side), L2-normalised. A
    field is None when the network has no such output. ``layers``: the outputs tapped by name
    (``net.taps``), kept in their own shape (B x C x H x W maps, B x N x D tokens).
    """

    logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    embedding: torch.Tensor | None = None
    text_embedding: torch.Tensor | None = None
    layers: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def of(cls, values: dict[str, torch.Tensor]) -> "ModelOutput":
        """The record of named values: the fields by their names, every other name a layer."""
        return cls(**{k: v for k, v in values.items() if k in FIELDS},
                   layers={k: v for k, v in values.items() if k not in FIELDS})

    def get(self, name: str) -> torch.Tensor | None:
        """A field or a tapped layer by name (None when absent)."""
        return getattr(self, name) if name in FIELDS else self.layers.get(name)

    def values(self) -> dict[str, torch.Tensor]:
        """Every output present, fields and layers, by name."""
        present = {f.name: getattr(self, f.name) for f in fields(self)
                   if f.name in FIELDS and getattr(self, f.name) is not None}
        return {**present, **self.layers}

    def detach(self) -> "ModelOutput":
        return ModelOutput.of({k: v.detach() for k, v in self.values().items()})

    def available(self) -> set[str]:
        return set(self.values())
