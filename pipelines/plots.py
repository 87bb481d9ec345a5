"""The report's pictures: learning curves, attention heat maps (a_ij), and scores by source length.

Each function writes one PNG and returns its path; matplotlib runs headless (Agg).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def learning_curves(task: str, runs: Sequence[tuple[str, list[dict[str, Any]]]], primary: str, path: Path) -> Path:
    """Losses (left) and the validation primary metric (right) against training steps, one line per run."""
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, records in runs:
        steps = [r["step"] for r in records]
        line, = loss_ax.plot(steps, [r["valid_loss"] for r in records], marker=".", label=f"{label} valid")
        loss_ax.plot(steps, [r["train_loss"] for r in records], linestyle="--", color=line.get_color(),
                     label=f"{label} train")
        metric_ax.plot(steps, [r.get(f"valid_{primary}", float("nan")) for r in records], marker=".", label=label)
    loss_ax.set(xlabel="step", ylabel="loss per token", title=f"{task}: loss")
    metric_ax.set(xlabel="step", ylabel=primary, title=f"{task}: validation {primary}")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def attention_map(source: Sequence[str], output: Sequence[str], weights: Any, title: str, path: Path) -> Path:
    """The a_ij matrix of one prediction: output token i (rows) attending to source position j (columns)."""
    rows, cols = len(output), len(source)
    fig, ax = plt.subplots(figsize=(max(3.0, 0.35 * cols + 1.5), max(2.5, 0.3 * rows + 1.2)))
    image = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(cols), source, rotation=90, fontsize=7)
    ax.set_yticks(range(rows), output, fontsize=7)
    ax.set(xlabel="source", ylabel="output")
    ax.set_title(title, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _save(fig, path)


def by_length(task: str, primary: str, buckets: Sequence[str], runs: Sequence[tuple[str, list[float]]],
              path: Path) -> Path:
    """The primary metric per source-length bucket, one line per run."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, scores in runs:
        ax.plot(range(len(buckets)), scores, marker="o", label=label)
    ax.set_xticks(range(len(buckets)), buckets)
    ax.set(xlabel="source length (words, or positions for non-text input)", ylabel=primary,
           title=f"{task}: {primary} by source length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
