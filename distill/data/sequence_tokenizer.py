"""Text <-> token ids for sequence-to-sequence networks, with T5's conventions (pad 0, end of
sequence 1), so the built-in networks and Hugging Face T5 models read the same batches.

:class:`PieceTokenizer` works offline from the training texts: words, single digits (so numbers
the training set never showed are still spelled) and punctuation; a piece that starts a new
word carries ``▁`` (SentencePiece's mark), so decoding restores the spacing exactly.
:class:`HFSequenceTokenizer` is a local Hugging Face tokenizer folder (the ``text`` extra)."""
from __future__ import annotations

import re
from collections import Counter

import torch

from distill.errors import ConfigError

PAD, EOS, UNKNOWN = 0, 1, 2
MARK = "▁"
PIECE = re.compile(r"[a-z]+|\d|[^\sa-z\d]")


def pieces(text: str) -> list[str]:
    """``"tom has 12."`` -> ``["▁tom", "▁has", "▁1", "2", "."]`` (lower-cased)."""
    out = []
    for word in text.lower().split():
        for k, match in enumerate(PIECE.finditer(word)):
            out.append((MARK if k == 0 else "") + match.group())
    return out


class PieceTokenizer:
    """Pieces seen in ``texts`` and every digit get ids from 3 on; others are unknown (id 2)."""

    def __init__(self, texts: list[str]):
        digits = {f"{mark}{d}" for d in "0123456789" for mark in ("", MARK)}
        seen = sorted(set(p for t in texts for p in pieces(t)) | digits)
        self.vocab = ["<pad>", "</s>", "<unk>", *seen]
        self.ids = {p: i for i, p in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def lengths(self, texts: list[str]) -> list[int]:
        """Tokens per text, end of sequence included."""
        return [len(pieces(t)) + 1 for t in texts]

    def __call__(self, texts: list[str], length: int) -> torch.Tensor:
        """N x ``length`` ids, each text cut to ``length - 1`` pieces and ended with EOS."""
        out = torch.full((len(texts), length), PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.ids.get(p, UNKNOWN) for p in pieces(text)][:length - 1] + [EOS]
            out[row, :len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        """N x L ids -> N texts, each up to its first EOS."""
        texts = []
        for row in ids.tolist():
            words = []
            for i in row:
                if i in (PAD, EOS):
                    break
                words.append(self.vocab[i] if i < len(self.vocab) else "<unk>")
            texts.append("".join(words).replace(MARK, " ").strip())
        return texts


class HFSequenceTokenizer:
    """A local Hugging Face tokenizer folder (e.g. T5's), with the same interface."""

    def __init__(self, path: str):
        from students.hf_text import local_folder, transformers_module

        try:
            self.tokenizer = transformers_module().AutoTokenizer.from_pretrained(
                local_folder(path, "data.tokenizer", "tokenizer_config.json"),
                local_files_only=True)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ConfigError("data.tokenizer", f"{path!r} holds no usable tokenizer "
                                                f"({type(e).__name__}); give a folder written by "
                                                f"a tokenizer's save_pretrained") from None
        if (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id) != (PAD, EOS):
            raise ConfigError("data.tokenizer", f"the tokenizer pads with id "
                                                f"{self.tokenizer.pad_token_id} and ends sequences "
                                                f"with {self.tokenizer.eos_token_id}; the sequence "
                                                f"networks read T5's 0 and 1")

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def _ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids ending with EOS (T5's tokenizer adds it; one that does not gets it)."""
        rows = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        return [row if row and row[-1] == EOS else row + [EOS] for row in rows]

    def lengths(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self._ids(texts)]

    def __call__(self, texts: list[str], length: int) -> torch.Tensor:
        out = torch.full((len(texts), length), PAD, dtype=torch.long)
        for row, ids in enumerate(self._ids(texts)):
            ids = ids[:length - 1] + [EOS] if len(ids) > length else ids
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        texts = []
        for row in ids.tolist():
            end = row.index(EOS) if EOS in row else len(row)
            texts.append(self.tokenizer.decode(row[:end], skip_special_tokens=True).strip())
        return texts


def make_sequence_tokenizer(tokenizer: str, texts: list[str]):
    """``pieces``: a :class:`PieceTokenizer` of ``texts``; otherwise a local Hugging Face folder."""
    if tokenizer == "pieces":
        return PieceTokenizer(texts)
    return HFSequenceTokenizer(tokenizer)
