"""Scheduled sampling (Bengio et al., 2015): the teacher-forcing ratio as a function of the update step."""
from __future__ import annotations

import math

DEFAULT_K = {"linear": 1e-4, "exponential": 0.9999, "inverse_sigmoid": 1000.0}


def teacher_forcing_ratio(schedule: str, start: float, step: int, k: float = 0.0, floor: float = 0.0) -> float:
    """`constant`: start. `linear`: start - k*step. `exponential`: start * k**step.
    `inverse_sigmoid`: start * k / (k + exp(step / k)). Never below `floor`."""
    if schedule == "constant":
        return start
    k = k or DEFAULT_K[schedule]
    if schedule == "linear":
        ratio = start - k * step
    elif schedule == "exponential":
        ratio = start * k ** step
    elif schedule == "inverse_sigmoid":
        ratio = start * k / (k + math.exp(min(step / k, 700.0)))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    return max(floor, min(start, ratio))
