"""ROUGE-1/2/L F1 with the rouge-score package (Porter stemming on), several references per record."""
from __future__ import annotations

from rouge_score import rouge_scorer

TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(hypotheses: list[str], references: list[list[str]]) -> dict[str, float]:
    """Mean F1 x 100 over records. A record with several references scores its best match per ROUGE
    type (rouge-score's `score_multi`); one reference is rouge-score's plain `score`."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    scorer = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=True)
    totals = dict.fromkeys(TYPES, 0.0)
    for hyp, refs in zip(hypotheses, references):
        scores = scorer.score(refs[0], hyp) if len(refs) == 1 else scorer.score_multi(refs, hyp)
        for name in TYPES:
            totals[name] += scores[name].fmeasure
    count = max(len(hypotheses), 1)
    return {name: 100.0 * total / count for name, total in totals.items()}
