"""Front-end output -> RNN encoder states over packed sequences (padding never enters the RNN)."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNN_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}

# A recurrent state: h (layers, B, H) for a GRU, (h, c) for an LSTM.
State = Tensor | tuple[Tensor, Tensor]


class TextEmbedding(nn.Module):
    """The text front-end: token ids (B, S) -> embeddings (B, S, E).

    `word_dropout` (model.word_dropout): in training, each real token is replaced by <unk> with this
    probability, so the model cannot lean on any single word and the <unk> embedding, which unseen
    words get at test time, is trained on words in context (Iyyer et al. 2015; Dai & Le 2015).
    """

    def __init__(self, vocab_size: int, size: int, dropout: float, pad_id: int = 0, word_dropout: float = 0.0,
                 unk_id: int = 1):
        super().__init__()
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"model.word_dropout = {word_dropout}: must be in [0, 1)")
        self.embed = nn.Embedding(vocab_size, size, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.word_dropout, self.pad_id, self.unk_id = word_dropout, pad_id, unk_id
        self.output_size = size

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and self.word_dropout > 0:
            drop = (torch.rand(ids.shape, device=ids.device) < self.word_dropout) & (ids != self.pad_id)
            ids = ids.masked_fill(drop, self.unk_id)
        return self.dropout(self.embed(ids)), lengths


class RNNEncoder(nn.Module):
    """A GRU/LSTM over the front-end's vectors; a bidirectional one splits `hidden` over its directions."""

    def __init__(self, input_size: int, hidden: int, layers: int, cell: str, bidirectional: bool, dropout: float):
        super().__init__()
        if bidirectional and hidden % 2:
            raise ValueError("model.hidden must be even for a bidirectional encoder")
        self.bidirectional = bidirectional
        self.rnn = RNN_CELLS[cell](input_size, hidden // 2 if bidirectional else hidden, layers, batch_first=True,
                                   dropout=dropout if layers > 1 else 0.0, bidirectional=bidirectional)
        self.output_size = hidden

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, State]:
        """x (B, S, D), lengths (B,) -> states (B, S, hidden), final state per layer (layers, B, hidden)."""
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        if isinstance(final, tuple):
            return out, (self._merge(final[0]), self._merge(final[1]))
        return out, self._merge(final)

    def _merge(self, state: Tensor) -> Tensor:
        """(layers*dirs, B, h) -> (layers, B, dirs*h): forward and backward finals side by side."""
        if not self.bidirectional:
            return state
        layers2, batch, size = state.shape
        return state.view(layers2 // 2, 2, batch, size).transpose(1, 2).reshape(layers2 // 2, batch, 2 * size)
