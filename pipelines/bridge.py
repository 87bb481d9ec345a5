"""The context c that links encoder and decoder, and the decoder's initial state made from it.

`last`: c = h_T (the encoder's final states are the decoder's initial states).
`linear`: c = q(h_T) = tanh(W h_T), per layer.
`pool`: c = q(h_1..h_T) = tanh(W pool(h_j)) with mean or max over valid steps, or (`max_mean`) both side by
side, tanh(W [max_j h_j; mean_j h_j]) (as InferSent/ULMFiT concatenate pools for classification).
`attention`: c = q(h_1..h_T) = sum_j a_j h_j, a = softmax_j(u . tanh(W h_j + b)) over valid steps,
with u a learned query (attention pooling); the initial state is c per layer, as for `pool`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .encoder import State
from .errors import UserError


def pool_states(states: Tensor, mask: Tensor, how: str) -> Tensor:
    """Mean or max of states (B, S, H) over the valid steps given by mask (B, S); `max_mean`: both
    concatenated, (B, 2H)."""
    if how == "max_mean":
        return torch.cat([pool_states(states, mask, "max"), pool_states(states, mask, "mean")], dim=-1)
    if how == "max":
        return states.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


class AttentionPooling(nn.Module):
    """A learned query scores each encoder state; c is the weighted sum of the states (padding gets weight 0).

    The query starts at zero, so training starts from mean pooling and learns which steps matter.
    """

    def __init__(self, size: int):
        super().__init__()
        self.proj = nn.Linear(size, size)
        self.query = nn.Parameter(torch.zeros(size))

    def forward(self, states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """states (B, S, H), mask (B, S) -> (c (B, H), weights (B, S))."""
        scores = torch.tanh(self.proj(states)) @ self.query
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1) * mask.to(scores.dtype)
        weights = weights / weights.sum(1, keepdim=True).clamp(min=torch.finfo(scores.dtype).tiny)
        return torch.bmm(weights.unsqueeze(1), states).squeeze(1), weights


class Bridge(nn.Module):
    def __init__(self, kind: str, size: int, layers: int, lstm: bool, pool: str = "mean"):
        super().__init__()
        self.kind, self.layers, self.lstm, self.pool = kind, layers, lstm, pool
        if pool == "max_mean" and kind != "pool":
            raise UserError('model.pool = "max_mean" needs model.bridge = "pool" (it projects [max; mean] back to H)')
        if kind in ("linear", "pool"):
            self.h_proj = nn.Linear(2 * size if kind == "pool" and pool == "max_mean" else size, size)
            if lstm and kind == "linear":
                self.c_proj = nn.Linear(size, size)
        elif kind == "attention":
            self.attend = AttentionPooling(size)

    def forward(self, states: Tensor, mask: Tensor, final: State | None) -> tuple[State, Tensor]:
        """-> (the decoder's initial state, per layer; the context vector c (B, H))."""
        if self.kind == "attention":
            c, _ = self.attend(states, mask)
            h = c.unsqueeze(0).expand(self.layers, -1, -1).contiguous()
            return ((h, torch.zeros_like(h)) if self.lstm else h), c
        if self.kind == "pool" or final is None:
            pooled = pool_states(states, mask, self.pool)
            c = torch.tanh(self.h_proj(pooled)) if self.kind != "last" else pooled
            h = c.unsqueeze(0).expand(self.layers, -1, -1).contiguous()
            return ((h, torch.zeros_like(h)) if self.lstm else h), c
        h, cell = final if isinstance(final, tuple) else (final, None)
        if self.kind == "linear":
            h = torch.tanh(self.h_proj(h))
            cell = torch.tanh(self.c_proj(cell)) if cell is not None else None
        return ((h, cell) if self.lstm else h), h[-1]
