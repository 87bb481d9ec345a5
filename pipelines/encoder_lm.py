"""A joint language-model loss on a text classifier's encoder (`train.lm_weight`), for N->1 text tasks.

Small labelled sets (MR's 7.7k sentences) leave most of the encoder's parameters weakly constrained by
one bit per sentence. Predicting the words of the same sentences from the encoder's states gives every
token a training signal: the forward direction's state at step t predicts token t+1, the backward
direction's state predicts token t-1 (ELMo's two directions; Dai & Le 2015 and Rei 2017 use such
an objective on the task's own text before or beside the supervised one). Neither direction sees the
word it predicts, so this needs a one-layer bidirectional encoder (in a deeper one the second layer's
forward states have read the first layer's backward states, i.e. the future) or a unidirectional one.
The classifier's loss becomes CE + w * (mean LM loss per token) * (examples in the batch).
"""
from __future__ import annotations

from torch import Tensor, nn

from .loss import output_layer_loss


class EncoderLM(nn.Module):
    """Next-word (and, for a bidirectional encoder, previous-word) softmax heads over encoder states."""

    def __init__(self, hidden: int, vocab_size: int, bidirectional: bool):
        super().__init__()
        self.half = hidden // 2 if bidirectional else hidden
        self.next_word = nn.Linear(self.half, vocab_size)
        self.previous_word = nn.Linear(self.half, vocab_size) if bidirectional else None
        self._seen: tuple[Tensor, Tensor, Tensor] | None = None

    def observe(self, ids: Tensor, states: Tensor, mask: Tensor) -> None:
        """Keep the batch's token ids (B, S), encoder states (B, S, H) and mask (B, S) for `loss`."""
        self._seen = (ids, states, mask)

    def loss(self) -> tuple[Tensor, int]:
        """(summed token loss, number of predicted tokens) of the observed batch."""
        if self._seen is None:
            raise RuntimeError("EncoderLM.loss called before the encoder ran")
        ids, states, mask = self._seen
        self._seen = None
        ids = ids.to(states.device)
        pairs = mask[:, 1:] & mask[:, :-1]            # positions t, t+1 both real tokens
        gold = ids[:, 1:][pairs]
        total = output_layer_loss(states[:, :-1, : self.half][pairs], self.next_word, gold, 0.0)
        count = gold.numel()
        if self.previous_word is not None:
            gold = ids[:, :-1][pairs]
            total = total + output_layer_loss(states[:, 1:, self.half:][pairs], self.previous_word, gold, 0.0)
            count += gold.numel()
        return total, count
