"""A Hugging Face text encoder as the caption side of a retrieval network (the optional ``text``
extra): any ``AutoModel`` read from a local folder (``save_pretrained``), never downloaded. Its
last hidden states are projected to the tower's width; id 0 is padding (BERT's and T5's
convention; the data side's tokenizer is the same folder's)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distill.errors import ConfigError


def transformers_module():
    try:
        import transformers
    except ImportError:
        raise ConfigError("net.text", "a Hugging Face text encoder needs the optional `text` "
                                      "extra: pip install -e \".[text]\"") from None
    return transformers


def local_folder(path: str, key: str, marker: str = "config.json") -> str:
    """``path`` when it is a folder written by ``save_pretrained`` (holding ``marker``)."""
    if not (Path(path) / marker).is_file():
        raise ConfigError(key, f"{path!r} is not a local Hugging Face folder (no {marker}); "
                               f"give the folder written by save_pretrained (nothing is downloaded)")
    return path


class HFTextTower(nn.Module):
    """Token ids B x L -> tokens B x L x ``dim`` and the mask of real tokens."""

    def __init__(self, path: str, dim: int, vocab_size: int):
        super().__init__()
        transformers = transformers_module()
        self.model = transformers.AutoModel.from_pretrained(local_folder(path, "net.text"),
                                                            local_files_only=True)
        config = self.model.config
        if config.is_encoder_decoder:  # T5 and the like: the encoder reads the captions
            self.model = self.model.get_encoder()
        if config.vocab_size < vocab_size:
            raise ConfigError("net.text", f"the text model knows {config.vocab_size} token ids, "
                                          f"the data's tokenizer {vocab_size}; give both the same "
                                          f"folder")
        self.project = nn.Linear(config.hidden_size, dim)

    def forward(self, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = texts != 0
        mask[:, 0] |= ~mask.any(dim=1)
        hidden = self.model(input_ids=texts, attention_mask=mask.long()).last_hidden_state
        return self.project(hidden), mask


class HFTokenizer:
    """Captions -> ids with a local Hugging Face tokenizer, padded or cut to ``length``."""

    def __init__(self, path: str, length: int):
        transformers = transformers_module()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            local_folder(path, "data.tokenizer"), local_files_only=True)
        if self.tokenizer.pad_token_id != 0:
            raise ConfigError("data.tokenizer", f"the tokenizer pads with id "
                                                f"{self.tokenizer.pad_token_id}; the text towers "
                                                f"read id 0 as padding (BERT's and T5's)")
        self.length = length

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def __call__(self, captions: list[str]) -> torch.Tensor:
        return self.tokenizer(captions, padding="max_length", truncation=True,
                              max_length=self.length, return_tensors="pt")["input_ids"]
