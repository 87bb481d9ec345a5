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
