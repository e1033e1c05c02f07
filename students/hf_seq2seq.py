"""A Hugging Face T5 (Raffel et al. 2020) as a sequence-to-sequence network of the generation task
(the optional ``text`` extra): read from a local folder written by ``save_pretrained``, never
downloaded, or built untrained from a dictionary of ``T5Config`` values."""
from __future__ import annotations

import torch

from distill.errors import ConfigError
from distill.registry import networks
from students.hf_text import local_folder, transformers_module
from students.sequence_model import EOS, PAD, START, Memory, SequenceModel, source_mask
from students.taps import Tapped


class HFSeq2Seq(SequenceModel):
    """A ``T5ForConditionalGeneration`` behind the :class:`SequenceModel` interface; its token
    conventions must be T5's (pad 0, end 1, decoder start 0), as the data's tokenizers write."""

    def __init__(self, model, key: str):
        super().__init__()
        config = model.config
        ids = (config.pad_token_id, config.eos_token_id,
               getattr(config, "decoder_start_token_id", None))
        if ids != (PAD, EOS, START):
            raise ConfigError(key, f"the model's pad, end and decoder start ids are {ids}; the "
                                   f"generation task's are T5's ({PAD}, {EOS}, {START})")
        self.model = model
        self.encoder_output = transformers_module().modeling_outputs.BaseModelOutput

    def encode(self, src: torch.Tensor) -> Memory:
        mask = source_mask(src)
        states = self.model.get_encoder()(input_ids=src, attention_mask=mask.long())
        return Memory(states.last_hidden_state, mask)

    def decode(self, memory: Memory,
               decoder_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(encoder_outputs=self.encoder_output(last_hidden_state=memory.states),
                         attention_mask=memory.mask.long(), decoder_input_ids=decoder_input,
                         output_hidden_states=True, use_cache=False)
        return out.decoder_hidden_states[-1], out.logits


def t5_model(vocab_size: int, path: str | None, config: dict | None):
    """The T5 model in ``path``, or a new one from ``config`` (its vocabulary the data's unless
    given)."""
    transformers = transformers_module()
    if (path is None) == (config is None):
        raise ConfigError("net.path" if path is None else "net.config",
                          "give exactly one of path (a local folder written by save_pretrained) "
                          "and config (T5Config values for an untrained model)")
    if path is not None:
        return transformers.T5ForConditionalGeneration.from_pretrained(
            local_folder(path, "net.path"), local_files_only=True)
    try:
        values = transformers.T5Config(**{"vocab_size": vocab_size, "decoder_start_token_id": START,
                                          **config})
    except Exception as err:  # transformers' validation errors have no common base across versions
        raise ConfigError("net.config", f"not a valid T5 configuration: {err}") from None
    return transformers.T5ForConditionalGeneration(values)


@networks.register("t5")
def t5(vocab_size: int, text_length: int, path: str | None = None,
       config: dict | None = None) -> Tapped:
    """Hugging Face T5 (the ``text`` extra) for the generation task: ``path`` a local folder
    written by save_pretrained, or ``config`` T5Config values for an untrained model. T5's
    relative positions read sequences of any length, so ``text_length`` sets no limit."""
    key = "net.path" if path is not None else "net.config"
    model = t5_model(vocab_size, path, config)
    if model.config.vocab_size < vocab_size:
        raise ConfigError(key, f"the model knows {model.config.vocab_size} token ids, the data's "
                               f"tokenizer {vocab_size}; give the model the tokenizer's vocabulary")
    return Tapped(HFSeq2Seq(model, key), {})
