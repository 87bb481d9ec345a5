"""Joint CTC on the encoder (hybrid CTC/attention, as in ESPnet): a linear head over the encoder states,
trained with weight w as loss = (1 - w) * attention + w * CTC.

CTC's monotonic alignment teaches the encoder where each token lies, so the attention decoder's
alignments settle sooner and more stably. The blank is the target vocabulary's pad id 0: padding is
never a real target, so reusing it keeps the head the size of the vocabulary and needs no new id.
The targets are the decoder's gold tokens without </s> and padding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLANK, UNK = 0, 1   # TextVocab.pad_id, TextVocab.unk_id


class CTCHead(nn.Module):
    """Encoder states (B, S, H) -> per-step log-probabilities over the target vocabulary (blank = pad)."""

    def __init__(self, size: int, vocab_size: int):
        super().__init__()
        self.proj = nn.Linear(size, vocab_size)
        self._states: tuple[Tensor, Tensor] | None = None

    def observe(self, states: Tensor, mask: Tensor) -> None:
        """Keep the latest batch's encoder states (set by Seq2Seq.encode), so the encoder runs once per update."""
        self._states = (states, mask)

    def loss(self, gold: Tensor, eos: int) -> Tensor:
        """Summed CTC loss of the observed batch against gold token ids (B, T) padded with 0, each ending in </s>."""
        if self._states is None:
            raise RuntimeError("CTCHead.loss called before the encoder ran")
        states, mask = self._states
        self._states = None
        log_probs = torch.log_softmax(self.proj(states).float(), dim=-1).transpose(0, 1)   # (S, B, V)
        keep = (gold != BLANK) & (gold != eos)
        gold = gold.masked_fill(gold >= log_probs.size(-1), UNK)   # a pointer-copy id has no CTC class
        return F.ctc_loss(log_probs, gold.masked_fill(~keep, BLANK), mask.sum(1), keep.sum(1), blank=BLANK,
                          reduction="sum", zero_infinity=True)


def joint_loss(attention: Tensor, ctc: Tensor, weight: float) -> Tensor:
    """(1 - w) * attention + w * CTC, both summed over the batch."""
    return (1.0 - weight) * attention + weight * ctc


def best_path(log_probs: Tensor, lengths: Tensor) -> list[list[int]]:
    """Greedy CTC decoding: the arg-max token of each of the first `lengths[b]` steps, repeats merged and
    blanks dropped. log_probs (B, S, V) (or logits: only the arg-max matters)."""
    best = log_probs.argmax(-1).tolist()
    out = []
    for row, length in zip(best, lengths.tolist()):
        path = row[:length]
        out.append([t for j, t in enumerate(path) if t != BLANK and (j == 0 or t != path[j - 1])])
    return out


def sequence_log_probs(log_probs: Tensor, lengths: Tensor, candidates: list[list[int]]) -> Tensor:
    """log P_ctc(y | x) of each candidate token sequence (without </s>) under the per-step log-probabilities
    (N, S, V) of its utterance (row n of log_probs belongs to candidate n); -inf where no alignment fits."""
    n = len(candidates)
    if n == 0:
        return log_probs.new_zeros(0)
    width = max(1, max(len(c) for c in candidates))
    targets = torch.zeros(n, width, dtype=torch.long, device=log_probs.device)
    for i, c in enumerate(candidates):
        if c:
            targets[i, : len(c)] = torch.tensor(c, device=log_probs.device)
    target_lengths = torch.tensor([len(c) for c in candidates], device=log_probs.device)
    nll = F.ctc_loss(log_probs.float().transpose(0, 1), targets, lengths.to(log_probs.device), target_lengths,
                     blank=BLANK, reduction="none", zero_infinity=False)
    return -nll
