"""A small transformer encoder-decoder (Vaswani et al. 2017, "Attention Is All You Need"): the
student, or a teacher trained first, of the generation task."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import ConfigError
from distill.registry import networks
from students.attention import attend, keys_values, slow_path
from students.sequence_model import PAD, Memory, SequenceModel, Stepper, source_mask
from students.taps import Tapped


class Seq2Seq(SequenceModel):
    """Pre-norm encoder and decoder layers over one learned token embedding, shared by both sides
    and tied to the output projection, plus learned positions up to ``text_length``. Source
    padding is masked in the encoder and in cross-attention, target padding in the decoder."""

    def __init__(self, vocab_size: int, text_length: int, dim: int, layers: int,
                 decoder_layers: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.dim, self.text_length = dim, text_length
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)  # x sqrt(dim) at the input: unit scale
        self.source_positions = nn.Parameter(torch.randn(1, text_length, dim))
        self.target_positions = nn.Parameter(torch.randn(1, text_length, dim))
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(dim, heads, ff, dropout, batch_first=True, norm_first=True),
            layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(dim, heads, ff, dropout, batch_first=True, norm_first=True),
            decoder_layers, norm=nn.LayerNorm(dim))

    def _embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.text_length:
            raise ValueError(f"a sequence of {ids.shape[1]} tokens is longer than this seq2seq "
                             f"network's text_length {self.text_length}")
        return self.dropout(self.embed(ids) * self.dim ** 0.5 + positions[:, :ids.shape[1]])

    def encode(self, src: torch.Tensor) -> Memory:
        mask = source_mask(src)
        with slow_path(src.device):
            states = self.encoder(self._embed(src, self.source_positions),
                                  src_key_padding_mask=~mask)
        return Memory(states, mask)

    def decode(self, memory: Memory,
               decoder_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = decoder_input.shape[1]
        future = torch.ones(length, length, dtype=torch.bool,
                            device=decoder_input.device).triu(1)
        padding = decoder_input == PAD
        padding[:, 0] = False  # the start id, which is also the padding id
        states = self.decoder(self._embed(decoder_input, self.target_positions), memory.states,
                              tgt_mask=future, tgt_key_padding_mask=padding,
                              memory_key_padding_mask=~memory.mask)
        return states, F.linear(states, self.embed.weight)


    def stepper(self, memory: Memory) -> "CachedStepper":
        return CachedStepper(self, memory)


class CachedStepper(Stepper):
    """Incremental decoding of :class:`Seq2Seq` (eval mode): each decoder layer keeps the
    projected keys and values of the positions decoded so far and of the source (computed once),
    so a step attends with one query instead of decoding the whole prefix again; the numbers of
    :meth:`Seq2Seq.decode` on the prefix."""

    def __init__(self, net: Seq2Seq, memory: Memory):
        self.net, self.layers = net, list(net.decoder.layers)
        self.source = [keys_values(layer.multihead_attn, memory.states) for layer in self.layers]
        self.ignore_source = ~memory.mask[:, None, None]  # B x 1 x 1 x S
        self.kept: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)
        self.padding: list[torch.Tensor] = []

    def __call__(self, previous: torch.Tensor, t: int) -> torch.Tensor:
        net = self.net
        if t >= net.text_length:
            raise ValueError(f"a sequence of {t + 1} tokens is longer than this seq2seq "
                             f"network's text_length {net.text_length}")
        self.padding.append((previous == PAD) & (t > 0))  # the start id is no padding
        ignore = torch.stack(self.padding, dim=1)[:, None, None]
        x = net.embed(previous)[:, None] * net.dim ** 0.5 + net.target_positions[:, t:t + 1]
        for i, layer in enumerate(self.layers):
            h = layer.norm1(x)
            k, v = keys_values(layer.self_attn, h)
            if self.kept[i] is not None:
                k, v = torch.cat([self.kept[i][0], k], dim=2), torch.cat([self.kept[i][1], v], dim=2)
            self.kept[i] = k, v
            x = x + attend(layer.self_attn, h, k, v, ignore)
            x = x + attend(layer.multihead_attn, layer.norm2(x), *self.source[i],
                           self.ignore_source)
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        return F.linear(net.decoder.norm(x), net.embed.weight)[:, 0]

    def keep(self, rows: torch.Tensor) -> None:
        self.source = [(k[rows], v[rows]) for k, v in self.source]
        self.ignore_source = self.ignore_source[rows]
        self.kept = [(k[rows], v[rows]) for k, v in self.kept]
        self.padding = [p[rows] for p in self.padding]


@networks.register("seq2seq")
def seq2seq(vocab_size: int, text_length: int, dim: int = 128, layers: int = 2,
            decoder_layers: int | None = None, heads: int = 4, ff: int | None = None,
            dropout: float = 0.1) -> Tapped:
    """Transformer encoder-decoder (Vaswani et al. 2017) for the generation task: ``layers``
    encoder layers (``decoder_layers`` decoder layers, as many by default), width ``dim``,
    feed-forward width ``ff`` (4 x dim by default)."""
    if dim % heads:
        raise ConfigError("net.heads", f"dim {dim} is not divisible by heads {heads}")
    return Tapped(Seq2Seq(vocab_size, text_length, dim, layers,
                          layers if decoder_layers is None else decoder_layers, heads,
                          4 * dim if ff is None else ff, dropout), {})
