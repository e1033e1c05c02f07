"""The sequence-to-sequence networks of the generation task (seq2seq, t5): teacher-forced token
log-likelihoods against a hand computation and Hugging Face's own loss, greedy and sampled decoding
against step-by-step references, end-of-sequence handling, padding, the hyperparameters, and a
short training run that learns to reverse sequences."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distill.errors import ConfigError
from students import build_network
from students.sequence_model import EOS, Memory, SequenceModel

VOCAB, LENGTH = 14, 8
TINY_T5 = {"d_model": 16, "d_ff": 32, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
           "d_kv": 8}


def build(name: str, vocab_size: int = VOCAB, **params) -> SequenceModel:
    return build_network(name, params, num_classes=1, input_shape=(LENGTH,),
                         vocab_size=vocab_size, text_length=LENGTH).net


def make(name: str) -> SequenceModel:
    """An untrained network in eval mode (no dropout)."""
    torch.manual_seed(0)
    net = build("seq2seq", dim=32, layers=1) if name == "seq2seq" else build("t5", config=TINY_T5)
    return net.eval()


def padded(rows: list[list[int]], width: int = LENGTH) -> torch.Tensor:
    return torch.tensor([row + [0] * (width - len(row)) for row in rows])


SRC = padded([[5, 6, 7, 1], [8, 9, 10, 11, 12, 1], [3, 1]])
TGT = padded([[7, 6, 5, 1], [4, 1], [13, 12, 11, 10, 9, 8, 1]])


@pytest.fixture(params=["seq2seq", "t5"])
def net(request) -> SequenceModel:
    return make(request.param)


def test_token_nll_is_the_cross_entropy_of_each_target_token_and_0_at_padding(net):
    decoder_input = torch.cat([torch.zeros(3, 1, dtype=torch.long), TGT[:, :-1]], dim=1)
    logits = net.decode_logits(net.encode(SRC), decoder_input)
    expected = -torch.log_softmax(logits, dim=-1).gather(2, TGT[..., None])[..., 0]
    nll = net.token_nll(SRC, TGT)
    assert nll.shape == TGT.shape
    real = TGT != 0
    torch.testing.assert_close(nll[real], expected[real])
    torch.testing.assert_close(nll[real], F.cross_entropy(logits[real], TGT[real],
                                                          reduction="none"))
    assert (nll[~real] == 0).all()
    nll.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for name, p in net.named_parameters() if "embed" in name or "shared" in name)


def test_token_nll_reads_a_given_or_expanded_memory(net):
    memory = net.encode(SRC)
    torch.testing.assert_close(net.token_nll(SRC, TGT, memory=memory), net.token_nll(SRC, TGT))
    repeats = torch.tensor([2, 0, 3])
    expanded = net.expand(memory, repeats)
    sources = SRC.repeat_interleave(repeats, dim=0)
    targets = padded([[4, 1], [5, 5, 1], [9, 1], [10, 11, 1], [12, 1]])
    torch.testing.assert_close(net.token_nll(None, targets, memory=expanded),
                               net.token_nll(sources, targets))
    assert net.expand(memory, 2).mask.shape[0] == 6


def test_padding_changes_nothing_on_either_side(net):
    """Source padding is masked in the encoder and in cross-attention, target padding in the
    decoder: extra padding columns leave every real position as it was."""
    src, tgt = padded([[5, 6, 1]], 3), padded([[7, 1]], 2)
    wide_src, wide_tgt = padded([[5, 6, 1]]), padded([[7, 1]])
    torch.testing.assert_close(net.token_nll(wide_src, wide_tgt)[:, :2], net.token_nll(src, tgt))
    narrow, wide = net(src, tgt), net(wide_src, wide_tgt)
    torch.testing.assert_close(wide.features, narrow.features)
    torch.testing.assert_close(wide.tokens[:, :2], narrow.tokens)


def test_a_source_of_padding_only_still_gives_finite_values(net):
    empty = torch.zeros(2, LENGTH, dtype=torch.long)
    assert net.token_nll(empty, TGT[:2]).isfinite().all()
    assert net(empty, TGT[:2]).features.isfinite().all()
    assert net.generate(empty, 4).shape == (2, 4)


def test_the_model_output_is_the_pooled_encoder_and_the_decoder_states():
    tapped = build_network("seq2seq", {"dim": 32, "layers": 1}, num_classes=1,
                           input_shape=(LENGTH,), vocab_size=VOCAB, text_length=LENGTH).eval()
    out = tapped(SRC, TGT)
    assert out.available() == {"features", "tokens"}
    assert out.features.shape == (3, 32) and out.tokens.shape == (3, LENGTH, 32)
    memory = tapped.net.encode(SRC)
    torch.testing.assert_close(out.features[2], memory.states[2, :2].mean(dim=0))


def reference_greedy(net: SequenceModel, src: torch.Tensor, max_length: int) -> torch.Tensor:
    """One row at a time, the argmax of the last position, until the end of sequence."""
    out = torch.zeros(len(src), max_length, dtype=torch.long)
    for row in range(len(src)):
        memory = net.encode(src[row:row + 1])
        prefix = [0]
        for t in range(max_length):
            logits = net.decode_logits(memory, torch.tensor([prefix]))
            out[row, t] = token = int(logits[0, -1].argmax())
            if token == EOS:
                break
            prefix.append(token)
    return out


def test_greedy_generation_is_the_step_by_step_argmax(net):
    with torch.no_grad():
        expected = reference_greedy(net, SRC, 6)
    generated = net.generate(SRC, max_length=6)
    assert generated.dtype == torch.long and generated.shape == (3, 6)
    assert torch.equal(generated, expected)


def test_sampling_follows_the_generator_and_the_temperature(net):
    def sample(seed: int, temperature: float = 1.0) -> torch.Tensor:
        return net.generate(SRC, 6, temperature, torch.Generator().manual_seed(seed))

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))
    assert torch.equal(sample(3, temperature=1e-6), net.generate(SRC, 6))


class Scripted(SequenceModel):
    """Emits a fixed script per source row: logit 10 for ``script[row, t]`` at step t, else 0;
    counts its decoder calls."""

    def __init__(self, script: torch.Tensor, vocab_size: int = 8):
        super().__init__()
        self.script, self.vocab_size, self.calls = script, vocab_size, 0

    def encode(self, src):
        return Memory(torch.arange(len(src), dtype=torch.float)[:, None, None], src != 0)

    def decode(self, memory, decoder_input):
        self.calls += 1
        rows = memory.states[:, 0, 0].long()
        steps = decoder_input.shape[1]
        logits = 10 * F.one_hot(self.script[rows, :steps], self.vocab_size).float()
        return torch.zeros(len(rows), steps, 1), logits


def test_a_row_ends_at_its_first_end_of_sequence_and_decoding_stops_when_all_have():
    script = torch.tensor([[3, 1, 4, 5, 1, 6], [1, 7, 7, 7, 7, 7], [2, 2, 1, 3, 3, 3]])
    net = Scripted(script)
    generated = net.generate(torch.ones(3, 2, dtype=torch.long), max_length=6)
    assert generated.tolist() == [[3, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [2, 2, 1, 0, 0, 0]]
    assert net.calls == 3
    net.calls = 0
    generated = net.generate(torch.ones(3, 2, dtype=torch.long), max_length=2)
    assert generated.tolist() == [[3, 1], [1, 0], [2, 2]] and net.calls == 2


def test_sampling_draws_from_the_softmax_of_the_tempered_logits():
    class Fixed(Scripted):
        def decode(self, memory, decoder_input):
            logits = torch.tensor([-9.0, 0.0, 1.0, 2.0, 3.0])
            return None, logits.expand(len(memory.mask), decoder_input.shape[1], 5)

    net = Fixed(torch.zeros(1, 1, dtype=torch.long))
    generator = torch.Generator().manual_seed(0)
    drawn = net.generate(torch.ones(20000, 1, dtype=torch.long), 1, 2.0, generator)[:, 0]
    frequencies = torch.bincount(drawn, minlength=5).float() / len(drawn)
    expected = torch.softmax(torch.tensor([-9.0, 0.0, 1.0, 2.0, 3.0]) / 2.0, dim=0)
    torch.testing.assert_close(frequencies, expected, atol=0.015, rtol=0)


def test_generation_runs_in_eval_mode_and_restores_the_mode():
    torch.manual_seed(0)
    net = build("seq2seq", dim=32, layers=1, dropout=0.5)
    net.train()
    in_train_mode = net.generate(SRC, 6)
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    assert torch.equal(net.generate(SRC, 6), in_train_mode)
    assert not any(m.training for m in net.modules())
    assert not net.generate(SRC, 6).requires_grad


def reversal_batch(size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sequences of 2 to 5 symbols (ids 2..11) and their reversals, each ended by EOS."""
    lengths = torch.randint(2, 6, (size,), generator=generator).tolist()
    symbols = torch.randint(2, 12, (size, 5), generator=generator).tolist()
    src = padded([s[:n] + [EOS] for s, n in zip(symbols, lengths)], 6)
    tgt = padded([s[:n][::-1] + [EOS] for s, n in zip(symbols, lengths)], 6)
    return src, tgt


def test_seq2seq_learns_to_reverse_short_sequences():
    torch.manual_seed(0)
    net = build("seq2seq", dim=32, layers=1, dropout=0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        src, tgt = reversal_batch(64, generator)
        loss = net.token_nll(src, tgt).sum() / (tgt != 0).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    src, tgt = reversal_batch(500, torch.Generator().manual_seed(1))
    generated = net.generate(src, 6)
    accuracy = (generated == tgt).all(dim=1).float().mean()
    assert accuracy > 0.9  # chance is under 1e-2 (10 symbols, 2 to 5 of them)
    # rows end after 3 to 6 tokens and leave the batch: each row as decoded on its own
    alone = torch.cat([net.generate(src[i:i + 1], 6) for i in range(40)])
    assert torch.equal(generated[:40], alone)


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_each_hyperparameter_changes_the_network():
    base = n_params(build("seq2seq"))
    assert n_params(build("seq2seq", dim=64)) < base
    assert n_params(build("seq2seq", layers=3)) > base
    assert n_params(build("seq2seq", decoder_layers=1)) < base
    assert n_params(build("seq2seq", ff=64)) < base
    torch.manual_seed(0)
    two = build("seq2seq", dim=32, heads=2).eval()
    torch.manual_seed(0)
    four = build("seq2seq", dim=32, heads=4).eval()
    assert all(torch.equal(a, b) for a, b in zip(two.parameters(), four.parameters()))
    assert not torch.allclose(two.token_nll(SRC, TGT), four.token_nll(SRC, TGT))
    for dropout, changes in ((0.0, False), (0.3, True)):
        net = build("seq2seq", dim=32, dropout=dropout)
        train = net.train().token_nll(SRC, TGT)
        assert (not torch.allclose(train, net.eval().token_nll(SRC, TGT))) == changes
    with pytest.raises(ConfigError, match="heads"):
        build("seq2seq", dim=30, heads=4)


def test_a_sequence_longer_than_text_length_is_refused():
    net = make("seq2seq")
    long = torch.full((1, LENGTH + 1), 5)
    with pytest.raises(ValueError, match=f"{LENGTH + 1} tokens .* text_length {LENGTH}"):
        net.encode(long)
    with pytest.raises(ValueError, match="text_length"):
        net.token_nll(SRC, long)
    with pytest.raises(ValueError, match="text_length"):
        net.generate(SRC, LENGTH + 1)


def test_t5_token_nll_sums_to_hugging_faces_loss():
    net = make("t5")
    nll = net.token_nll(SRC, TGT)
    labels = TGT.masked_fill(TGT == 0, -100)
    for row in range(len(SRC)):
        loss = net.model(input_ids=SRC[row:row + 1], attention_mask=(SRC[row:row + 1] != 0).long(),
                         labels=labels[row:row + 1]).loss
        torch.testing.assert_close(nll[row].sum(), loss * (TGT[row] != 0).sum())


def test_t5_saved_and_loaded_from_a_folder_gives_the_same_outputs(tmp_path):
    net = make("t5")
    net.model.save_pretrained(tmp_path)
    loaded = build("t5", path=str(tmp_path)).eval()
    torch.testing.assert_close(loaded.token_nll(SRC, TGT), net.token_nll(SRC, TGT))
    assert torch.equal(loaded.generate(SRC, 6), net.generate(SRC, 6))


@pytest.mark.parametrize("params, key, message", [
    ({}, "net.path", "exactly one of path"),
    ({"path": "x", "config": {}}, "net.config", "exactly one of path"),
    ({"path": "no-such-folder"}, "net.path", "no config.json"),
    ({"config": {**TINY_T5, "vocab_size": VOCAB - 1}}, "net.config", "knows 13 token ids"),
    ({"config": {**TINY_T5, "pad_token_id": 3}}, "net.config", "pad, end and decoder start"),
    ({"config": {**TINY_T5, "feed_forward_proj": "a-b-c"}}, "net.config", "not a valid T5"),
])
def test_t5_refuses_what_it_cannot_build(params, key, message):
    with pytest.raises(ConfigError, match=message) as error:
        build("t5", **params)
    assert error.value.key == key and "\n" not in str(error.value)


def test_incremental_decoding_gives_the_numbers_of_decoding_the_whole_prefix():
    torch.manual_seed(0)
    net = build("seq2seq", dim=32, layers=2, dropout=0.3).eval()
    memory = net.encode(SRC)
    full = SequenceModel.stepper(net, memory)  # the whole prefix again at every step
    cached = net.stepper(memory)
    tokens = [torch.zeros(3, dtype=torch.long), torch.tensor([5, 0, 7]), torch.tensor([6, 9, 0])]
    for t, previous in enumerate(tokens):  # a 0 after the start is padding for both
        torch.testing.assert_close(cached(previous, t), full(previous, t), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("enabled", [True, False])
def test_inference_without_the_fast_path_gives_the_same_numbers_and_restores_the_switch(enabled):
    torch.manual_seed(0)
    net = build("seq2seq", dim=32, layers=2).eval()
    torch.backends.mha.set_fastpath_enabled(True)
    with torch.no_grad():
        fast = net.encoder(net._embed(SRC, net.source_positions),
                           src_key_padding_mask=SRC == 0)
        torch.backends.mha.set_fastpath_enabled(enabled)
        ours = net.encode(SRC)
    assert torch.backends.mha.get_fastpath_enabled() is enabled
    torch.backends.mha.set_fastpath_enabled(True)
    real = SRC != 0
    torch.testing.assert_close(ours.states[real], fast[real], atol=1e-5, rtol=1e-5)
