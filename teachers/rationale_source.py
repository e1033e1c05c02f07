"""A teacher as a source of rationales (QCRD, Wang et al. 2024): several samples per training
problem from its ``explain:`` task at a temperature, drawn once and kept in a file beside its
weights, so every variant and seed of a grid reads the same rationales."""
from __future__ import annotations

import fcntl
from pathlib import Path

import torch

from distill.atomic_write import atomic_save


@torch.no_grad()
def sample_rationales(net, sources: torch.Tensor, count: int, temperature: float, length: int,
                      seed: int, batch_size: int = 256, device: torch.device | str = "cpu"
                      ) -> torch.Tensor:
    """N x ``count`` x ``length`` token ids: ``count`` samples for each source row, drawn with one
    generator seeded by ``seed`` (the same file for the same teacher, sources and seed)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    out = torch.zeros(len(sources), count, length, dtype=torch.long)
    was_training = net.training
    net.eval()  # no dropout: the encoder's memory is the network's, not a noisy one
    try:
        for start in range(0, len(sources), batch_size):
            rows = sources[start:start + batch_size].to(device)
            memory = net.expand(net.encode(rows), count)
            drawn = net.generate(rows.repeat_interleave(count, dim=0), max_length=length,
                                 temperature=temperature, generator=generator, memory=memory)
            out[start:start + len(rows)] = drawn.view(len(rows), count, length).cpu()
    finally:
        net.train(was_training)
    return out


def teacher_rationales(net, sources: torch.Tensor, count: int, temperature: float, length: int,
                       seed: int, cache: Path | None, say=print,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """The teacher's rationales for ``sources``: read from ``cache`` when it holds them, else
    sampled (and written there). Processes that need the same file take turns: the first samples,
    the others wait for it and read it."""
    if cache is None:
        return _sampled(net, sources, count, temperature, length, seed, None, say, device)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        turn = open(cache.with_name(f".{cache.name}.lock"), "a")
    except OSError:  # a folder we cannot write to: sample without keeping them
        return _sampled(net, sources, count, temperature, length, seed, cache, say, device)
    with turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        if cache.exists():
            stored = torch.load(cache, map_location="cpu", weights_only=True)
            if isinstance(stored, torch.Tensor) and stored.shape == (len(sources), count, length):
                say(f"teacher rationales: reused {cache}")
                return stored
        return _sampled(net, sources, count, temperature, length, seed, cache, say, device)


def _sampled(net, sources, count, temperature, length, seed, cache, say, device) -> torch.Tensor:
    tokens = sample_rationales(net, sources, count, temperature, length, seed, device=device)
    where = ""
    if cache is not None:
        try:
            atomic_save(tokens, cache)
            where = f" -> {cache}"
        except OSError as e:  # e.g. a read-only folder of a given checkpoint: sample next time
            where = f" (not kept: {cache.parent} is not writable, {e.strerror})"
    say(f"teacher rationales: sampled {count} per problem for {len(sources)} problems at "
        f"temperature {temperature:g}{where}")
    return tokens
