"""Attention scores between decoder states (queries) and encoder states (memory).

`dot`: q·m.  `general` (Luong bilinear): q·W·m.  `additive` (Bahdanau concat): v·tanh(Wq + Um).
Padding positions get zero weight. The memory-side work is done once per batch
(`keys`), so a decoding step costs one small matrix product.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    def __init__(self, kind: str, query_size: int, memory_size: int, additive_size: int | None = None):
        super().__init__()
        self.kind = kind
        if kind == "dot":
            if query_size != memory_size:
                raise ValueError(f"dot attention needs equal sizes, got query {query_size} and memory {memory_size}")
        elif kind == "general":
            self.query_proj = nn.Linear(query_size, memory_size, bias=False)
        elif kind == "additive":
            size = additive_size or query_size
            self.query_proj = nn.Linear(query_size, size, bias=False)
            self.memory_proj = nn.Linear(memory_size, size, bias=True)
            self.v = nn.Linear(size, 1, bias=False)
        else:
            raise ValueError(f"unknown attention {kind!r}")

    def keys(self, memory: Tensor) -> Tensor:
        """Per-batch precomputation over the memory (B, S, M)."""
        return self.memory_proj(memory) if self.kind == "additive" else memory

    def forward(self, query: Tensor, memory: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, T, Q), memory (B, S, M), mask (B, S) true where valid -> context (B, T, M), weights (B, T, S)."""
        if self.kind == "additive":
            hidden = torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))  # B,T,S,A
            scores = self.v(hidden).squeeze(-1)
        else:
            q = query if self.kind == "dot" else self.query_proj(query)
            scores = torch.bmm(q, keys.transpose(1, 2))
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, memory), weights
