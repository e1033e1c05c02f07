"""Paired image-caption data for retrieval: a word-level tokenizer that works offline, the
training pairs (one item per caption) and the test gallery.

Relevance is carried by keys: an image and a caption are relevant to each other when their keys
are equal (for Flickr30K and COCO the key is the image, so a caption is relevant to its own image
only; for the embedded digit captions it is the content a caption describes)."""
from __future__ import annotations

import re
from collections import Counter

import torch
from torch.utils.data import Dataset

PAD, UNKNOWN = 0, 1
WORD = re.compile(r"[a-z0-9]+")


class WordTokenizer:
    """Lower-cased words to ids; words seen fewer than ``min_count`` times in the training
    captions are unknown; captions are cut or padded to ``length`` tokens."""

    def __init__(self, captions: list[str], length: int = 32, min_count: int = 1):
        counts = Counter(w for c in captions for w in WORD.findall(c.lower()))
        words = sorted(w for w, n in counts.items() if n >= min_count)
        self.ids = {w: i + 2 for i, w in enumerate(words)}
        self.length = length

    @property
    def vocab_size(self) -> int:
        return len(self.ids) + 2

    def __call__(self, captions: list[str]) -> torch.Tensor:
        out = torch.full((len(captions), self.length), PAD, dtype=torch.long)
        for row, caption in enumerate(captions):
            ids = [self.ids.get(w, UNKNOWN) for w in WORD.findall(caption.lower())][:self.length]
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


def make_tokenizer(tokenizer: str, captions: list[str], length: int):
    """``words``: a :class:`WordTokenizer` of ``captions``; otherwise a local Hugging Face
    tokenizer folder (the optional ``text`` extra), the same one the networks' ``text:`` reads."""
    if tokenizer == "words":
        return WordTokenizer(captions, length=length)
    from students.hf_text import HFTokenizer

    return HFTokenizer(tokenizer, length)


class PairSet(Dataset):
    """One item per caption: ``((image, tokens), key)``; ``image_of[i]`` is caption i's image."""

    def __init__(self, images: torch.Tensor, tokens: torch.Tensor, image_of: torch.Tensor,
                 keys: torch.Tensor):
        self.images, self.tokens, self.image_of, self.keys = images, tokens, image_of, keys

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, i):
        return (self.images[self.image_of[i]], self.tokens[i]), self.keys[i]


class ImageSet(Dataset):
    """The gallery's images: ``(image, key)``."""

    def __init__(self, images: torch.Tensor, keys: torch.Tensor):
        self.images, self.keys = images, keys

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.keys[i]
