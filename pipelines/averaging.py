"""An exponential moving average of the weights (`train.ema`), validated and kept as `best` in their place.

On a small corpus such as Multi30k the weights of single updates wander around a minimum the
average sits closer to; Polyak averaging is what fairseq's `--ema-decay` and Marian's
`--exponential-smoothing` offer for the same reason. The average starts at the initial weights,
so its decay is warmed up as min(decay, (1 + n) / (10 + n)) over the first updates
(TensorFlow's `num_updates` rule): early validations do not score the random initialisation.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, updates: int) -> None:
        """Fold in the weights after update number `updates` (1-based): one fused lerp over all tensors."""
        decay = min(self.decay, (1 + updates) / (10 + updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block (validation, the `best` checkpoint)."""
        with torch.no_grad():
            current = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.data for p in self.params], self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params], current)

    def tensors(self) -> dict[str, torch.Tensor]:
        """For the `last` checkpoint, so a resumed run continues the same average."""
        return {f"ema/{i}": s.detach().to("cpu", copy=True) for i, s in enumerate(self.shadow)}

    @torch.no_grad()
    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Continue the saved average; a checkpoint written without one starts it from its weights."""
        for i, (s, p) in enumerate(zip(self.shadow, self.params)):
            s.copy_(tensors.get(f"ema/{i}", p.detach()))
