"""Greedy and beam search: exactness against exhaustive search, batching, and agreement between paths."""
from __future__ import annotations

import itertools
import math

import torch

from pipelines.search import beam_search, greedy, length_penalty
from pipelines.settings import CORE_SCHEMA
from pipelines.model import Seq2Seq
from pipelines.encoder import TextEmbedding

BOS, EOS = 2, 3


def tiny_model(vocab: int = 6, cell: str = "gru", attention: str = "general", input_feeding: bool = False) -> Seq2Seq:
    torch.manual_seed(7)
    model = {k: v.default for k, v in CORE_SCHEMA["model"].items()}
    model.update(cell=cell, embedding=8, hidden=8, dropout=0.0, attention=attention, input_feeding=input_feeding)
    net = Seq2Seq(TextEmbedding(vocab, 8, 0.0), model, vocab)
    with torch.no_grad():   # sharpen the output so different hypotheses have clearly different scores
        net.decoder.generator.weight.mul_(6.0)
        net.decoder.generator.bias[[0, BOS]] = -1e4   # a raw model could emit pad or <s>; rule them out
    return net.eval()


def sequence_logprob(model: Seq2Seq, memory, tokens: list[int]) -> float:
    state, feed = model.decoder.initial_state(memory)
    total, prev = 0.0, BOS
    for tok in tokens:
        logits, state, feed, _ = model.decoder.step(torch.tensor([prev]), state, feed, memory)
        total += float(torch.log_softmax(logits, -1)[0, tok])
        prev = tok
    return total


def exhaustive(model, memory, vocab: int, max_len: int, alpha: float) -> tuple[list[int], float]:
    """Best sequence by brute force over every sequence up to max_len (ending in </s>, or cut at max_len)."""
    best, best_score = None, -math.inf
    symbols = [t for t in range(vocab) if t not in (0, BOS)]
    for length in range(1, max_len + 1):
        for seq in itertools.product(symbols, repeat=length):
            if EOS in seq[:-1]:
                continue
            if seq[-1] != EOS and length < max_len:
                continue
            score = sequence_logprob(model, memory, list(seq)) / length_penalty(length, alpha)
            if score > best_score:
                best, best_score = list(seq), score
    return best, best_score


def test_beam_matches_exhaustive_search():
    vocab, max_len = 5, 4
    for alpha, cell, feed in ((0.0, "gru", False), (0.0, "lstm", True), (1.0, "gru", False)):
        model = tiny_model(vocab, cell, input_feeding=feed)
        with torch.no_grad():
            for seed in range(3):
                torch.manual_seed(seed)
                src = torch.randint(4, vocab, (1, 3))
                memory = model.encode(src, torch.tensor([3]))
                want, want_score = exhaustive(model, memory, vocab, max_len, alpha)
                hyps = beam_search(model, memory, torch.tensor([max_len]), BOS, EOS, beam=vocab ** max_len,
                                   alpha=alpha, n_best=3)[0]
                assert hyps[0].tokens == want, (alpha, cell, seed)
                assert abs(hyps[0].score - want_score) < 1e-4
                assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_beam_of_one_is_greedy_and_batching_changes_nothing():
    model = tiny_model(12, "lstm", "additive")
    torch.manual_seed(1)
    src = torch.randint(4, 12, (5, 7))
    lengths = torch.tensor([7, 3, 5, 1, 6])
    src[1, 3:], src[2, 5:], src[3, 1:], src[4, 6:] = 0, 0, 0, 0
    limits = torch.tensor([9, 6, 8, 4, 9])
    with torch.no_grad():
        memory = model.encode(src, lengths)
        greedy_out = [h.tokens for h in greedy(model, memory, limits, BOS, EOS)]
        beam1 = [h[0].tokens for h in beam_search(model, memory, limits, BOS, EOS, beam=1, alpha=0.0)]
        assert beam1 == greedy_out
        batched = beam_search(model, memory, limits, BOS, EOS, beam=4, alpha=1.0, n_best=2)
        for i in range(5):
            single = beam_search(model, model.encode(src[i:i + 1, : lengths[i]], lengths[i:i + 1]),
                                 limits[i:i + 1], BOS, EOS, beam=4, alpha=1.0, n_best=2)[0]
            assert [h.tokens for h in single] == [h.tokens for h in batched[i]]
            assert all(abs(a.score - b.score) < 1e-4 for a, b in zip(single, batched[i]))


def test_outputs_respect_length_limits():
    model = tiny_model(6)
    with torch.no_grad():
        model.decoder.generator.bias.data[EOS] = -1e4    # never ends by itself
        memory = model.encode(torch.tensor([[4, 5, 4]]), torch.tensor([3]))
        assert len(greedy(model, memory, torch.tensor([5]), BOS, EOS)[0].tokens) == 5
        assert all(len(h.tokens) == 5 for h in beam_search(model, memory, torch.tensor([5]), BOS, EOS, 3, n_best=3)[0])
