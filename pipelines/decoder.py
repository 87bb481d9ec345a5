"""The RNN decoder: previous token (+ context c, + input feed) -> RNN -> attention -> softmax(W[h_t; c_t]).

With full teacher forcing and no input feeding, every step's input is known in
advance, so the whole target runs through the RNN in one call and attention is one
batched product. Scheduled sampling and input feeding need the previous step's
output, so they take the step-by-step path; search always does.

Copy (`copy`, pointer-generator): a switch p_gen = sigmoid(w[c_t; h_t; x_t]) mixes the
vocabulary distribution with the attention over source tokens (see copy.py); the
output is then log-probabilities over the batch's extended vocabulary, not logits,
and input ids >= V (copied OOVs) are embedded as <unk>. Coverage (`coverage`): the
attention sees the running sum of its past weights; the RNN still runs over the whole
target at once under teacher forcing, and only the attention loops over the steps.
In the step state, coverage travels with the input feed as `(feed, coverage)`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import copy as pointer
from .attention import Attention
from .encoder import RNN_CELLS, State
from .errors import UserError
from .loss import output_layer_loss, sequence_loss


@dataclass
class Memory:
    """What the decoder reads from the encoder, for a batch (or a batch of beams)."""

    states: Tensor           # (B, S, M) encoder states
    keys: Tensor | None      # attention's precomputed memory side
    mask: Tensor             # (B, S) true at valid positions
    context: Tensor          # (B, H) the bridge's context vector c
    init: State | None       # decoder initial state, or None for zeros
    copy_ids: Tensor | None = None   # (B, S) source tokens in the extended target vocabulary (model.copy)
    extra_vocab: int = 0             # temporary ids the batch needs beyond the vocabulary (model.copy)

    def select(self, index: Tensor) -> "Memory":
        """The rows `index` of every batch-first tensor (beam expansion and reordering)."""
        pick = lambda t: None if t is None else t.index_select(0, index)
        init = self.init
        if init is not None:
            init = tuple(x.index_select(1, index) for x in init) if isinstance(init, tuple) else init.index_select(1, index)
        return Memory(self.states.index_select(0, index), pick(self.keys), self.mask.index_select(0, index),
                      self.context.index_select(0, index), init, pick(self.copy_ids), self.extra_vocab)


def select_state(state: State, index: Tensor) -> State:
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


def select_feed(feed: Tensor | tuple | None, index: Tensor) -> Tensor | tuple | None:
    """The rows `index` of a step's input feed (a tensor, None, or `(feed, coverage)`)."""
    if isinstance(feed, tuple):
        return tuple(select_feed(f, index) for f in feed)
    return None if feed is None else feed.index_select(0, index)


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, embedding: int, hidden: int, layers: int, cell: str, dropout: float,
                 attention: str, context: str, input_feeding: bool, memory_size: int, tie_embeddings: bool,
                 pad_id: int = 0, copy: bool = False, coverage: bool = False, unk_id: int = 1):
        super().__init__()
        if (copy or coverage) and attention == "none":
            raise UserError(f"model.{'copy' if copy else 'coverage'} = true needs attention over the source; "
                            f"set model.attention to additive, general or dot")
        self.cell, self.layers, self.hidden = cell, layers, hidden
        self.feed_context = context in ("every_step", "both")
        self.input_feeding = input_feeding
        self.output_size = embedding if tie_embeddings else hidden
        self.embed = nn.Embedding(vocab_size, embedding, padding_idx=pad_id)
        rnn_input = embedding + (memory_size if self.feed_context else 0) + (self.output_size if input_feeding else 0)
        self.rnn = RNN_CELLS[cell](rnn_input, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.attention = None if attention == "none" else Attention(attention, hidden, memory_size, coverage=coverage)
        self.copy, self.coverage, self.vocab_size, self.unk_id, self.pad_id = copy, coverage, vocab_size, unk_id, pad_id
        if copy:
            self.switch = nn.Linear(memory_size + hidden + embedding, 1)
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
        if self.coverage:
            return state, (feed, memory.states.new_zeros(batch, memory.states.size(1)))
        return state, feed

    def _embed(self, tokens: Tensor) -> Tensor:
        """Input embeddings; with copy, ids beyond the vocabulary (copied source OOVs) read as <unk>."""
        if self.copy:
            tokens = tokens.masked_fill(tokens >= self.vocab_size, self.unk_id)
        return self.dropout(self.embed(tokens))

    def _rnn_step(self, x: Tensor, state: State, known: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, State]:
        """One time step (x: (B, 1, D)) through the RNN's own weights with the fused cell kernels:
        on CPU, nn.LSTM/nn.GRU cost ~1.5x more per single-step call than torch.lstm_cell/gru_cell.
        `known`: (layer 0's input projection of this step's inputs known in advance, plus its bias, (B, G);
        the weight columns for the rest of the input, which x then holds alone), see `_forward_input_feeding`."""
        rnn, inp = self.rnn, x.squeeze(1)
        lstm = self.cell == "lstm"
        hs, cs = (state[0], state[1]) if lstm else (state, None)
        new_h, new_c = [], []
        for layer in range(self.layers):
            weights = [getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if layer == 0 and known is not None:
                weights[2], weights[0] = known   # the cell adds the (B, G) projection as a per-row bias
            if lstm:
                h, c = torch.lstm_cell(inp, (hs[layer], cs[layer]), *weights)
                new_c.append(c)
            else:
                h = torch.gru_cell(inp, hs[layer], *weights)
            new_h.append(h)
            inp = nn.functional.dropout(h, rnn.dropout, self.training) if layer + 1 < self.layers else h
        stack = lambda parts: parts[0].unsqueeze(0) if len(parts) == 1 else torch.stack(parts)
        h = stack(new_h)
        return inp.unsqueeze(1), ((h, stack(new_c)) if lstm else h)

    def _rnn_input(self, emb: Tensor, memory: Memory, feed: Tensor | None) -> Tensor:
        parts = [emb]
        if self.feed_context:
            parts.append(memory.context.unsqueeze(1).expand(-1, emb.size(1), -1))
        if feed is not None:
            parts.append(feed)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else emb

    def _attend(self, out: Tensor, memory: Memory, coverage: Tensor | None = None
                ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """RNN outputs (B, T, H) -> attentional vectors tanh(W[h_t; c_t]) (B, T, O), weights, contexts c_t,
        and the coverage after these steps (when given one, the steps are attended one at a time)."""
        weights = ctx = None
        if self.attention is not None and coverage is not None:
            contexts, rows = [], []
            for query in out.split(1, dim=1):   # split, not slicing: one gradient concatenation in backward
                c, w = self.attention(query, memory.states, memory.keys, memory.mask, coverage)
                coverage = coverage + w.squeeze(1)
                contexts.append(c)
                rows.append(w)
            ctx, weights = torch.cat(contexts, dim=1), torch.cat(rows, dim=1)
            out = torch.cat([out, ctx], dim=-1)
        elif self.attention is not None:
            ctx, weights = self.attention(out, memory.states, memory.keys, memory.mask)
            out = torch.cat([out, ctx], dim=-1)
        elif self.feed_context:
            out = torch.cat([out, memory.context.unsqueeze(1).expand(-1, out.size(1), -1)], dim=-1)
        return torch.tanh(self.combine(out)), weights, ctx, coverage

    def _output(self, vectors: Tensor, out: Tensor, ctx: Tensor | None, emb: Tensor, weights: Tensor | None,
                memory: Memory) -> Tensor:
        """Logits over the vocabulary, or with copy, log-probabilities over the extended vocabulary."""
        logits = self.generator(self.dropout(vectors))
        if not self.copy:
            return logits
        if memory.copy_ids is None:
            raise ValueError("model.copy: the batch carries no extended source ids (memory.copy_ids)")
        p_gen = torch.sigmoid(self.switch(torch.cat([ctx, out, emb], dim=-1)))
        return pointer.mix(logits, weights, p_gen, memory.copy_ids, memory.extra_vocab)

    def _finish(self, vectors: Tensor, out: Tensor, ctx: Tensor | None, emb: Tensor, weights: Tensor | None,
                memory: Memory, gold: Tensor | None, smoothing: float) -> Tensor:
        """Logits (gold None), or the summed token loss against `gold`: without copy through the fused
        output layer and loss (loss.py), over the real target positions only."""
        if gold is None:
            return self._output(vectors, out, ctx, emb, weights, memory)
        if self.copy:
            log_probs = self._output(vectors, out, ctx, emb, weights, memory)
            return sequence_loss(log_probs, gold, smoothing, True, self.vocab_size)[0]
        real = gold != self.pad_id
        return output_layer_loss(self.dropout(vectors[real]), self.generator, gold[real], smoothing)

    def forward(self, inputs: Tensor, memory: Memory, teacher_forcing: float = 1.0, gold: Tensor | None = None,
                smoothing: float = 0.0) -> tuple[Tensor, Tensor | None]:
        """Gold inputs (B, T) starting with <s> -> logits (B, T, V) (with copy: log-probs (B, T, V + extra)),
        attention (B, T, S) or None. Given the gold outputs `gold` (B, T), the summed, `smoothing`-smoothed
        token loss takes the logits' place: training needs only that, and it is cheaper (see loss.py)."""
        state, feed = self.initial_state(memory)
        if teacher_forcing >= 1.0 and not self.input_feeding:
            emb = self._embed(inputs)
            out, _ = self.rnn(self._rnn_input(emb, memory, None), state)
            vectors, weights, ctx, _ = self._attend(out, memory, feed[1] if self.coverage else None)
            return self._finish(vectors, out, ctx, emb, weights, memory, gold, smoothing), weights
        if teacher_forcing >= 1.0:
            return self._forward_input_feeding(inputs, memory, state, feed, gold, smoothing)
        logits, attn = [], []
        token = inputs[:, 0]
        for t in range(inputs.size(1)):
            if t > 0:
                use_gold = torch.rand(inputs.size(0), device=inputs.device) < teacher_forcing
                token = torch.where(use_gold, inputs[:, t], logits[-1].argmax(-1))
            step_logits, state, feed, weights = self.step(token, state, feed, memory)
            logits.append(step_logits)
            attn.append(weights)
        weights = torch.cat(attn, dim=1) if attn[0] is not None else None
        logits = torch.stack(logits, dim=1)
        if gold is None:
            return logits, weights
        return sequence_loss(logits, gold, smoothing, self.copy, self.vocab_size)[0], weights

    def _forward_input_feeding(self, inputs: Tensor, memory: Memory, state: State, feed: Tensor | tuple | None,
                               gold: Tensor | None, smoothing: float) -> tuple[Tensor, Tensor | None]:
        """Gold inputs with input feeding: RNN and attention go step by step (each step reads the last
        attentional vector), but embedding and the output layer run once over all steps, and so does
        the first RNN layer's input projection of what is known in advance (the embeddings, and c with
        context every_step): each step then multiplies only the input feed (on the peers' Multi30k shape
        that moves a quarter of the step's products into one large one)."""
        feed, coverage = feed if self.coverage else (feed, None)
        emb = self._embed(inputs)
        ahead = self._rnn_input(emb, memory, None)
        weight_ih = self.rnn.weight_ih_l0
        projected = nn.functional.linear(ahead, weight_ih[:, : ahead.size(-1)], self.rnn.bias_ih_l0)
        feed_weight = weight_ih[:, ahead.size(-1):].contiguous()
        outs, vectors, contexts, rows = [], [], [], []
        # unbind, not projected[:, t]: the backward of T selections would allocate and zero-fill T full
        # (B, T, G) gradients (12% of a training step on the peers' shape); unbind's stacks them once
        for step_input in projected.unbind(1):
            out, state = self._rnn_step(feed, state, (step_input, feed_weight))
            feed, weights, ctx, coverage = self._attend(out, memory, coverage)
            outs.append(out)
            vectors.append(feed)
            contexts.append(ctx)
            rows.append(weights)
        join = lambda parts: None if parts[0] is None else torch.cat(parts, dim=1)
        weights = join(rows)
        return self._finish(join(vectors), join(outs), join(contexts), emb, weights, memory, gold, smoothing), weights

    def step(self, token: Tensor, state: State, feed: Tensor | tuple | None, memory: Memory
             ) -> tuple[Tensor, State, Tensor | tuple | None, Tensor | None]:
        """One step for tokens (N,) -> logits (N, V) (log-probs with copy), new state, new input feed
        (`(feed, coverage)` with coverage), attention (N, 1, S)."""
        feed, coverage = feed if self.coverage else (feed, None)
        emb = self._embed(token.unsqueeze(1))
        out, state = self._rnn_step(self._rnn_input(emb, memory, feed), state)
        vector, weights, ctx, coverage = self._attend(out, memory, coverage)
        logits = self._output(vector, out, ctx, emb, weights, memory).squeeze(1)
        feed = vector if self.input_feeding else None
        return logits, state, ((feed, coverage) if self.coverage else feed), weights
