"""The context c that links encoder and decoder, and the decoder's initial state made from it.

`last`: c = h_T (the encoder's final states are the decoder's initial states).
`linear`: c = q(h_T) = tanh(W h_T), per layer.
`pool`: c = q(h_1..h_T) = tanh(W pool(h_j)) with mean or max over valid steps.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .encoder import State


def pool_states(states: Tensor, mask: Tensor, how: str) -> Tensor:
    """Mean or max of states (B, S, H) over the valid steps given by mask (B, S)."""
    if how == "max":
        return states.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


class Bridge(nn.Module):
    def __init__(self, kind: str, size: int, layers: int, lstm: bool, pool: str = "mean"):
        super().__init__()
        self.kind, self.layers, self.lstm, self.pool = kind, layers, lstm, pool
        if kind in ("linear", "pool"):
            self.h_proj = nn.Linear(size, size)
            if lstm and kind == "linear":
                self.c_proj = nn.Linear(size, size)

    def forward(self, states: Tensor, mask: Tensor, final: State | None) -> tuple[State, Tensor]:
        """-> (the decoder's initial state, per layer; the context vector c (B, H))."""
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
