"""Length-bucketed batches up to a padded-token budget, in a seeded order that can be resumed.

Examples are sorted by length (ties broken at random), cut into batches whose padded
size (rows x longest side) stays within `batch_tokens`, and the batches shuffled.
The plan for an epoch depends only on (seed, epoch), so a resumed run can rebuild
it and skip to where it stopped.
"""
from __future__ import annotations

import random
from typing import Sequence


def plan_batches(source_lengths: Sequence[int], target_lengths: Sequence[int], batch_tokens: int,
                 seed: int, epoch: int, shuffle: bool = True) -> list[list[int]]:
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(source_lengths)))
    noise = [rng.random() for _ in order] if shuffle else [0.0] * len(order)
    order.sort(key=lambda i: (source_lengths[i], target_lengths[i], noise[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        size = max(source_lengths[i], target_lengths[i], 1)
        if current and max(longest, size) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def plan_eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Fixed-size batches of similar length for decoding; results are put back in input order by the caller."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
