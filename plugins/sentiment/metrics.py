"""Accuracy and macro-F1 by counting (no scikit-learn needed), in percent like the engine's other metrics."""
from __future__ import annotations

from collections import Counter
from typing import Sequence


def accuracy(predicted: Sequence[str], gold: Sequence[str]) -> float:
    return 100.0 * sum(p == g for p, g in zip(predicted, gold)) / max(len(gold), 1)


def macro_f1(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over every class seen in the gold or predicted labels."""
    hits = Counter(g for p, g in zip(predicted, gold) if p == g)
    said, truth = Counter(predicted), Counter(gold)
    classes = set(said) | set(truth)
    scores = [2.0 * hits[c] / (said[c] + truth[c]) for c in classes]  # F1 = 2TP / (2TP + FP + FN)
    return 100.0 * sum(scores) / max(len(scores), 1)
