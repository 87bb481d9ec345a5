"""Greedy and beam search over a whole batch at once.

Beam search keeps `beam` hypotheses for every sentence of the batch in one (B*K)
tensor, so each step is one decoder call for the whole batch. Finished hypotheses
are scored with the GNMT length penalty ((5 + len) / 6) ** alpha, len counting </s>.
A sentence stops when it has `n_best` finished hypotheses and none of its live ones
can still beat them at the current length (exact when alpha = 0).

Constraints, in both searches: `min_length` forbids </s> before that many tokens;
`no_repeat_ngram` = n forbids a token that would repeat an n-gram already in the
hypothesis; `coverage_penalty` = beta adds the GNMT coverage penalty
beta * sum_i log(min(sum_t a_t,i, 1)) over valid source positions to finished
hypotheses' scores (it needs attention; in greedy search it only changes the score).
A copy model never emits the vocabulary's <unk>: a word the vocabulary lacks comes out by
copying it from the source, and an <unk> would only decode to nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .decoder import Memory, select_feed, select_state
from .errors import UserError


@dataclass
class Hypothesis:
    tokens: list[int]          # without <s>, ending in </s> unless cut by the length limit
    score: float               # log-probability / length penalty
    attention: Tensor | None = None


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    return ((5.0 + length) / 6.0) ** alpha


def max_lengths(source_lengths: Tensor, ratio: float, cap: int) -> Tensor:
    """Longest output per sentence: ratio x source length + 5, never above `cap`."""
    if ratio <= 0:
        return torch.full_like(source_lengths, cap)
    return (source_lengths.float() * ratio + 5).long().clamp(max=cap)


def constrain(logp: Tensor, length: int, history: list[list[int]] | None, eos: int, min_length: int,
              no_repeat_ngram: int) -> Tensor:
    """Log-probs (N, V) of the token after `length` tokens (`history`: the N hypotheses' tokens, needed
    for no_repeat_ngram) with the forbidden tokens at -inf."""
    if length < min_length:
        logp[:, eos] = float("-inf")
    n = no_repeat_ngram
    if n and history and length >= n - 1:
        for row, seq in enumerate(history):
            prefix = seq[length - n + 1:] if n > 1 else []
            banned = [seq[i + n - 1] for i in range(length - n + 1) if seq[i: i + n - 1] == prefix]
            if banned:
                logp[row, banned] = float("-inf")
    return logp


def coverage_penalty(attention_sum: Tensor, mask: Tensor, beta: float) -> Tensor:
    """GNMT: beta * sum over valid source positions of log(min(total attention, 1)), per row (N,)."""
    logs = attention_sum.clamp(min=1e-10, max=1.0).log().masked_fill(~mask, 0.0)
    return beta * logs.sum(-1)


def _no_unk(decoder, logp: Tensor) -> Tensor:
    if getattr(decoder, "copy", False):
        logp[:, decoder.unk_id] = float("-inf")
    return logp


def _attention_needed(weights: Tensor | None, beta: float) -> None:
    if beta and weights is None:
        raise UserError("search.coverage_penalty needs a model with attention (model.attention); set it to 0")


@torch.no_grad()
def greedy(model, memory: Memory, limits: Tensor, bos: int, eos: int, keep_attention: bool = False,
           min_length: int = 0, no_repeat_ngram: int = 0, coverage_beta: float = 0.0) -> list[Hypothesis]:
    """Arg-max decoding for a batch; attention rows kept for plots when asked."""
    decoder = model.decoder
    batch = memory.states.size(0)
    state, feed = decoder.initial_state(memory)
    token = torch.full((batch,), bos, dtype=torch.long, device=memory.states.device)
    limits = limits.to(token.device)
    done = torch.zeros(batch, dtype=torch.bool, device=token.device)
    tokens, scores, attention = [], torch.zeros(batch, device=token.device), []
    history: list[list[int]] = [[] for _ in range(batch)]
    attention_sum = memory.states.new_zeros(memory.mask.shape, dtype=torch.float)
    for t in range(int(limits.max())):
        logits, state, feed, weights = decoder.step(token, state, feed, memory)
        logp = _no_unk(decoder, torch.log_softmax(logits.float(), dim=-1))
        if min_length or no_repeat_ngram:
            logp = constrain(logp, t, history, eos, min_length, no_repeat_ngram)
        best, token = logp.max(dim=-1)
        scores += best.masked_fill(done, 0.0)
        tokens.append(token)
        if no_repeat_ngram:
            for seq, tok in zip(history, token.tolist()):
                seq.append(tok)
        if coverage_beta:
            _attention_needed(weights, coverage_beta)
            attention_sum += weights.squeeze(1).float().masked_fill(done.unsqueeze(1), 0.0)
        if keep_attention and weights is not None:
            attention.append(weights.squeeze(1))
        done |= (token == eos) | (t + 1 >= limits)
        if bool(done.all()):
            break
    if coverage_beta:
        scores += coverage_penalty(attention_sum, memory.mask, coverage_beta)
    steps = torch.stack(tokens, dim=1).tolist()
    result = []
    for b, seq in enumerate(steps):
        seq = seq[: seq.index(eos) + 1] if eos in seq else seq[: int(limits[b])]
        attn = torch.stack([a[b] for a in attention[: len(seq)]]) if attention else None
        result.append(Hypothesis(seq, float(scores[b]), attn))
    return result


@torch.no_grad()
def beam_search(model, memory: Memory, limits: Tensor, bos: int, eos: int, beam: int,
                alpha: float = 1.0, n_best: int = 1, min_length: int = 0, no_repeat_ngram: int = 0,
                coverage_beta: float = 0.0) -> list[list[Hypothesis]]:
    """The `n_best` best hypotheses of every sentence in the batch, best first.

    Sentences that are done leave the batch, so the decoder only ever runs on live ones.
    """
    decoder = model.decoder
    batch = memory.states.size(0)
    device = memory.states.device
    n_best = min(n_best, beam)
    memory = memory.select(torch.arange(batch, device=device).repeat_interleave(beam))
    state, feed = decoder.initial_state(memory)
    limits = limits.to(device)
    ids = list(range(batch))                            # original sentence of each live batch row
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0                                  # one live hypothesis per sentence at first
    sequences = torch.full((batch * beam, 1), bos, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    attention_sum = memory.states.new_zeros(memory.mask.shape, dtype=torch.float)   # (B*K, S)
    offsets = torch.arange(beam, device=device)
    for t in range(int(limits.max())):
        live = len(ids)
        base = (torch.arange(live, device=device) * beam).unsqueeze(1)
        logits, state, feed, weights = decoder.step(sequences[:, -1], state, feed, memory)
        logits = logits.float()
        normaliser = logits.logsumexp(dim=-1, keepdim=True)      # log-softmax without writing it out
        logits = _no_unk(decoder, logits)
        if min_length or no_repeat_ngram:
            history = sequences[:, 1:].tolist() if no_repeat_ngram else None
            logits = constrain(logits, t, history, eos, min_length, no_repeat_ngram)
        if coverage_beta:
            _attention_needed(weights, coverage_beta)
            attention_sum = attention_sum + weights.squeeze(1).float()
        cover = coverage_penalty(attention_sum, memory.mask, coverage_beta).tolist() if coverage_beta else None
        # The best 2K of a sentence's K x V continuations are among each hypothesis's own best 2K,
        # so only K x 2K candidates per sentence are scored and ranked.
        width = min(2 * beam, logits.size(-1))
        row_logits, row_tokens = logits.topk(width, dim=-1)
        candidates = (scores.unsqueeze(-1) + (row_logits - normaliser).view(live, beam, width)).view(live, -1)
        top_scores, top_index = candidates.topk(min(2 * beam, candidates.size(1)), dim=1)
        origin = top_index // width
        token = row_tokens.view(live, -1).gather(1, top_index)
        length = t + 1
        norm = length_penalty(length, alpha)
        is_eos = (token == eos) & torch.isfinite(top_scores)
        # Finished hypotheses: </s> among the candidates ranked within the beam.
        for b, k in is_eos[:, :beam].nonzero().tolist():
            row = b * beam + int(origin[b, k])
            bonus = cover[row] if cover is not None else 0.0
            finished[ids[b]].append((float(top_scores[b, k]) / norm + bonus, sequences[row, 1:].tolist() + [eos]))
        # Continue with the best `beam` candidates that did not end.
        scores, pick = top_scores.masked_fill(is_eos, float("-inf")).topk(beam, dim=1)
        rows = (base + origin.gather(1, pick)).view(-1)
        sequences = torch.cat([sequences.index_select(0, rows), token.gather(1, pick).view(-1, 1)], dim=1)
        state, feed = select_state(state, rows), select_feed(feed, rows)
        if coverage_beta:
            attention_sum = attention_sum.index_select(0, rows)
            cover = coverage_penalty(attention_sum, memory.mask, coverage_beta).tolist()
        # A sentence at its length limit ends with its live hypotheses as they are; one with n_best
        # finished hypotheses that no live one can beat at the current length is done.
        at_limit = (length >= limits).tolist()
        best_live = (scores.max(dim=1).values / norm).tolist()
        live_scores = scores.tolist()
        keep = []
        for b in range(live):
            if at_limit[b]:
                for k in range(beam):
                    if live_scores[b][k] != float("-inf"):
                        row = b * beam + k
                        bonus = cover[row] if cover is not None else 0.0
                        finished[ids[b]].append((live_scores[b][k] / norm + bonus, sequences[row, 1:].tolist()))
                continue
            done = finished[ids[b]]
            if len(done) >= n_best and sorted((s for s, _ in done), reverse=True)[n_best - 1] >= best_live[b]:
                continue
            keep.append(b)
        if not keep:
            break
        if len(keep) < live:   # drop the finished sentences from every batch-first tensor
            ids = [ids[b] for b in keep]
            kept = torch.tensor(keep, device=device)
            rows = (kept.unsqueeze(1) * beam + offsets).view(-1)
            memory, sequences = memory.select(rows), sequences.index_select(0, rows)
            state, feed = select_state(state, rows), select_feed(feed, rows)
            attention_sum = attention_sum.index_select(0, rows)
            scores, limits = scores.index_select(0, kept), limits.index_select(0, kept)
    return [[Hypothesis(seq, score) for score, seq in sorted(f, key=lambda x: -x[0])[:n_best]] for f in finished]
