"""Attention scores between decoder states (queries) and encoder states (memory).

`dot`: q·m.  `general` (Luong bilinear): q·W·m.  `additive` (Bahdanau concat): v·tanh(Wq + Um).
Padding positions get zero weight.

With coverage (See et al. 2017) the attention also sees cov = the sum of the previous
steps' weights: `additive` adds w_c·cov_i inside the tanh, as in the paper; `dot` and
`general` have no hidden layer to put it in, so they add a learned scalar times cov_i
to the score (it starts at 0 and the coverage loss teaches it to avoid covered words). The memory-side work is done once per batch
(`keys`, which for `general` holds W·m), so a decoding step costs one small matrix product.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    def __init__(self, kind: str, query_size: int, memory_size: int, additive_size: int | None = None,
                 coverage: bool = False):
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
        if coverage and kind == "additive":
            self.coverage_proj = nn.Linear(1, size, bias=False)
        elif coverage:
            self.coverage_scale = nn.Parameter(torch.zeros(()))

    def keys(self, memory: Tensor) -> Tensor:
        """Per-batch precomputation over the memory (B, S, M): `additive` U·m; `general` W applied to the
        memory side (q·(W·m) = (W^T·q)·m), so a decoding step skips a query projection; `dot` m itself."""
        if self.kind == "additive":
            return self.memory_proj(memory)
        if self.kind == "general":
            return torch.matmul(memory, self.query_proj.weight)
        return memory

    def forward(self, query: Tensor, memory: Tensor, keys: Tensor, mask: Tensor, coverage: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """query (B, T, Q), memory (B, S, M), mask (B, S) true where valid, coverage (B, S) or None
        -> context (B, T, M), weights (B, T, S)."""
        if self.kind == "additive":
            pre = self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1)  # B,T,S,A
            if coverage is not None:
                pre = pre + self.coverage_proj(coverage.unsqueeze(-1)).unsqueeze(1)
            scores = self.v(torch.tanh(pre)).squeeze(-1)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))
            if coverage is not None:
                scores = scores + self.coverage_scale * coverage.unsqueeze(1)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, memory), weights
