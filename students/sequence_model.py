"""What every sequence-to-sequence network shares: teacher-forced token log-likelihoods, batched
greedy or sampled decoding, and the ModelOutput of a (source, target) pair.

Token ids follow T5: 0 pads (and starts the decoder), 1 ends a sequence. A subclass gives
``encode`` (source ids -> :class:`Memory`) and ``decode`` (memory and decoder input -> the
decoder's last hidden states and the logits over the vocabulary, causal)."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from distill.contracts import ModelOutput
from students.towers import masked_mean

PAD, EOS, START = 0, 1, 0


class Memory(NamedTuple):
    """The encoder's hidden states B x S x D and the mask of real source tokens B x S."""

    states: torch.Tensor
    mask: torch.Tensor


def source_mask(src: torch.Tensor) -> torch.Tensor:
    """The real tokens of ``src``; a source of padding only keeps its first position, so that
    attention always has a key."""
    mask = src != PAD
    mask[:, 0] |= ~mask.any(dim=1)
    return mask


def shift_right(tgt: torch.Tensor) -> torch.Tensor:
    """Teacher forcing's decoder input: the start id, then ``tgt`` without its last position."""
    return torch.cat([torch.full_like(tgt[:, :1], START), tgt[:, :-1]], dim=1)


class SequenceModel(nn.Module):
    """A sequence-to-sequence network over token ids (pad 0, end 1, decoder start 0)."""

    def encode(self, src: torch.Tensor) -> Memory:
        """Source ids B x S (padded with 0) -> the encoder's memory."""
        raise NotImplementedError

    def decode(self, memory: Memory,
               decoder_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder input ids B x T -> (last hidden states B x T x D, logits B x T x V), causal."""
        raise NotImplementedError

    def expand(self, memory: Memory, repeats: int | torch.Tensor) -> Memory:
        """Each memory row repeated ``repeats`` times (an int, or one count per row), in order,
        so several targets per source share one encoder pass."""
        return Memory(*(t.repeat_interleave(repeats, dim=0) for t in memory))

    def decode_logits(self, memory: Memory, decoder_input: torch.Tensor) -> torch.Tensor:
        """Decoder input ids B x T -> logits B x T x V (position t sees inputs up to t)."""
        return self.decode(memory, decoder_input)[1]

    def token_nll(self, src: torch.Tensor, tgt: torch.Tensor,
                  memory: Memory | None = None) -> torch.Tensor:
        """Negative log-likelihood B x T of each target token under teacher forcing, 0 where
        ``tgt`` pads; ``memory`` (from :meth:`encode` or :meth:`expand`) stands for ``src``."""
        memory = self.encode(src) if memory is None else memory
        logits = self.decode_logits(memory, shift_right(tgt))
        return F.cross_entropy(logits.float().transpose(1, 2), tgt, ignore_index=PAD,
                               reduction="none")

    def stepper(self, memory: Memory) -> "Stepper":
        """A :class:`Stepper` that decodes the whole prefix again at each step (a network with a
        cache gives its own)."""
        return PrefixStepper(self, memory)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, max_length: int, temperature: float = 0.0,
                 generator: torch.Generator | None = None,
                 memory: Memory | None = None) -> torch.Tensor:
        """Decoded ids B x ``max_length``, in eval mode: the most likely token at each step
        (``temperature`` 0) or one drawn from ``softmax(logits / temperature)``. A row ends at its
        first end-of-sequence id, which is kept; the positions after it are 0. Once a quarter of
        the rows has ended they leave the batch, so that a step costs about the rows still
        decoding."""
        was_training = self.training
        self.eval()
        try:
            memory = self.encode(src) if memory is None else memory
            rows = memory.mask.shape[0]
            out = torch.zeros(rows, max_length, dtype=torch.long, device=memory.mask.device)
            open_rows = torch.arange(rows, device=out.device)  # the rows the stepper holds
            ended = torch.zeros(rows, dtype=torch.bool, device=out.device)  # of those
            previous = torch.full((rows,), START, dtype=torch.long, device=out.device)
            step = self.stepper(memory)
            for t in range(max_length):
                logits = step(previous, t).float()
                if temperature == 0:
                    token = logits.argmax(dim=-1)
                else:
                    probs = F.softmax(logits / temperature, dim=-1)
                    token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                token = token.masked_fill(ended, PAD)
                out[open_rows, t] = token
                ended |= token == EOS
                left = int((~ended).sum())
                if left == 0:
                    break
                if left <= len(ended) * 3 // 4:  # a quarter has ended: drop them
                    step.keep(~ended)
                    open_rows, token = open_rows[~ended], token[~ended]
                    ended = ended[~ended]
                previous = token
        finally:
            self.train(was_training)
        return out

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> ModelOutput:
        """``features``: the encoder's states averaged over the real source tokens (B x D);
        ``tokens``: the decoder's last hidden states under teacher forcing (B x T x D)."""
        memory = self.encode(src)
        states, _ = self.decode(memory, shift_right(tgt))
        return ModelOutput(features=masked_mean(memory.states, memory.mask), tokens=states)


class Stepper:
    """Decoding one token at a time: ``step(previous token B, position t) -> logits B x V``, and
    ``keep(rows)`` drops the rows (a bool mask B) that have ended from whatever it holds."""

    def __call__(self, previous: torch.Tensor, t: int) -> torch.Tensor:
        raise NotImplementedError

    def keep(self, rows: torch.Tensor) -> None:
        raise NotImplementedError


class PrefixStepper(Stepper):
    """Decodes the whole prefix again at every step."""

    def __init__(self, net: SequenceModel, memory: Memory):
        self.net, self.memory, self.prefix = net, memory, []

    def __call__(self, previous: torch.Tensor, t: int) -> torch.Tensor:
        self.prefix.append(previous)
        return self.net.decode_logits(self.memory, torch.stack(self.prefix, dim=1))[:, -1]

    def keep(self, rows: torch.Tensor) -> None:
        self.memory = Memory(*(m[rows] for m in self.memory))
        self.prefix = [p[rows] for p in self.prefix]
