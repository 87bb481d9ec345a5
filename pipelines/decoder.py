"""The RNN decoder: previous token (+ context c, + input feed) -> RNN -> attention -> softmax(W[h_t; c_t]).

With full teacher forcing and no input feeding, every step's input is known in
advance, so the whole target runs through the RNN in one call and attention is one
batched product. Scheduled sampling and input feeding need the previous step's
output, so they take the step-by-step path; search always does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import Attention
from .encoder import RNN_CELLS, State


@dataclass
class Memory:
    """What the decoder reads from the encoder, for a batch (or a batch of beams)."""

    states: Tensor           # (B, S, M) encoder states
    keys: Tensor | None      # attention's precomputed memory side
    mask: Tensor             # (B, S) true at valid positions
    context: Tensor          # (B, H) the bridge's context vector c
    init: State | None       # decoder initial state, or None for zeros

    def select(self, index: Tensor) -> "Memory":
        """The rows `index` of every batch-first tensor (beam expansion and reordering)."""
        pick = lambda t: None if t is None else t.index_select(0, index)
        init = self.init
        if init is not None:
            init = tuple(x.index_select(1, index) for x in init) if isinstance(init, tuple) else init.index_select(1, index)
        return Memory(self.states.index_select(0, index), pick(self.keys), self.mask.index_select(0, index),
                      self.context.index_select(0, index), init)


def select_state(state: State, index: Tensor) -> State:
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, embedding: int, hidden: int, layers: int, cell: str, dropout: float,
                 attention: str, context: str, input_feeding: bool, memory_size: int, tie_embeddings: bool,
                 pad_id: int = 0):
        super().__init__()
        self.cell, self.layers, self.hidden = cell, layers, hidden
        self.feed_context = context in ("every_step", "both")
        self.input_feeding = input_feeding
        self.output_size = embedding if tie_embeddings else hidden
        self.embed = nn.Embedding(vocab_size, embedding, padding_idx=pad_id)
        rnn_input = embedding + (memory_size if self.feed_context else 0) + (self.output_size if input_feeding else 0)
        self.rnn = RNN_CELLS[cell](rnn_input, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.attention = None if attention == "none" else Attention(attention, hidden, memory_size)
        extra = memory_size if (self.attention is not None or self.feed_context) else 0
        self.combine = nn.Linear(hidden + extra, self.output_size, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.generator = nn.Linear(self.output_size, vocab_size)
        if tie_embeddings:
            self.generator.weight = self.embed.weight

    def initial_state(self, memory: Memory) -> tuple[State, Tensor | None]:
        """(RNN state, input feed) before the first step."""
        batch = memory.states.size(0)
        state = memory.init
        if state is None:
            zeros = memory.states.new_zeros(self.layers, batch, self.hidden)
            state = (zeros, zeros.clone()) if self.cell == "lstm" else zeros
        feed = memory.states.new_zeros(batch, 1, self.output_size) if self.input_feeding else None
        return state, feed

    def _rnn_input(self, emb: Tensor, memory: Memory, feed: Tensor | None) -> Tensor:
        parts = [emb]
        if self.feed_context:
            parts.append(memory.context.unsqueeze(1).expand(-1, emb.size(1), -1))
        if feed is not None:
            parts.append(feed)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else emb

    def _attend(self, out: Tensor, memory: Memory) -> tuple[Tensor, Tensor | None]:
        """RNN outputs (B, T, H) -> attentional vectors tanh(W[h_t; c_t]) (B, T, O), weights."""
        weights = None
        if self.attention is not None:
            ctx, weights = self.attention(out, memory.states, memory.keys, memory.mask)
            out = torch.cat([out, ctx], dim=-1)
        elif self.feed_context:
            out = torch.cat([out, memory.context.unsqueeze(1).expand(-1, out.size(1), -1)], dim=-1)
        return torch.tanh(self.combine(out)), weights

    def forward(self, inputs: Tensor, memory: Memory, teacher_forcing: float = 1.0) -> tuple[Tensor, Tensor | None]:
        """Gold inputs (B, T) starting with <s> -> logits (B, T, V), attention (B, T, S) or None."""
        state, feed = self.initial_state(memory)
        if teacher_forcing >= 1.0 and not self.input_feeding:
            emb = self.dropout(self.embed(inputs))
            out, _ = self.rnn(self._rnn_input(emb, memory, None), state)
            vectors, weights = self._attend(out, memory)
            return self.generator(self.dropout(vectors)), weights
        logits, attn = [], []
        token = inputs[:, 0]
        for t in range(inputs.size(1)):
            if t > 0:
                gold = torch.rand(inputs.size(0), device=inputs.device) < teacher_forcing
                token = torch.where(gold, inputs[:, t], logits[-1].argmax(-1))
            step_logits, state, feed, weights = self.step(token, state, feed, memory)
            logits.append(step_logits)
            attn.append(weights)
        weights = torch.cat(attn, dim=1) if attn[0] is not None else None
        return torch.stack(logits, dim=1), weights

    def step(self, token: Tensor, state: State, feed: Tensor | None, memory: Memory
             ) -> tuple[Tensor, State, Tensor | None, Tensor | None]:
        """One step for tokens (N,) -> logits (N, V), new state, new input feed, attention (N, 1, S)."""
        emb = self.dropout(self.embed(token.unsqueeze(1)))
        out, state = self.rnn(self._rnn_input(emb, memory, feed), state)
        vector, weights = self._attend(out, memory)
        logits = self.generator(self.dropout(vector)).squeeze(1)
        return logits, state, (vector if self.input_feeding else None), weights
