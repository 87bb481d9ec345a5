"""Multi-reference caption metrics: CIDEr (pycocoevalcap's scorer, primary) and BLEU-4 (sacrebleu).

CIDEr is the COCO caption toolkit's implementation (CIDEr-D: tf-idf n-gram vectors, n = 1..4,
clipped counts, Gaussian length penalty sigma = 6, scaled by 10). Its idf comes from the
references of the evaluated images, so it is only meaningful over many images (over one
image every idf is 0 and so is the score). The toolkit's PTB tokenizer needs Java; here text
is lowercased and punctuation becomes spaces instead, a close and documented approximation.

BLEU-4 is sacrebleu's corpus BLEU over all references of each image (their number may vary:
missing ones are passed as None, which sacrebleu skips), lowercased, 13a tokenization.
"""
from __future__ import annotations

import re

from pycocoevalcap.cider.cider import Cider
from sacrebleu.metrics import BLEU

from pipelines import Scores

_PUNCTUATION = re.compile(r"[^\w\s]|_")


def simple_tokenize(text: str) -> str:
    """Lowercase, punctuation to spaces, single spaces: 'A dog, running.' -> 'a dog running'."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def cider(hypotheses: list[str], references: list[list[str]]) -> tuple[float, list[float]]:
    """Corpus CIDEr-D and the per-image scores."""
    if not hypotheses:
        return 0.0, []
    gts = {i: [simple_tokenize(r) for r in refs] or [""] for i, refs in enumerate(references)}
    res = {i: [simple_tokenize(h)] for i, h in enumerate(hypotheses)}
    score, per_image = Cider().compute_score(gts, res)
    return float(score), [float(x) for x in per_image]


def reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """Per-image reference lists -> sacrebleu's reference streams, padded with None where an image has fewer."""
    depth = max((len(r) for r in references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(depth)]


def bleu4(hypotheses: list[str], references: list[list[str]]) -> tuple[float, str]:
    """Corpus BLEU-4 over all references, and sacrebleu's signature."""
    metric = BLEU(lowercase=True)
    if not hypotheses:
        return 0.0, str(metric.get_signature())
    result = metric.corpus_score(hypotheses, reference_streams(references))
    return float(result.score), str(metric.get_signature())


def caption_scores(hypotheses: list[str], references: list[list[str]]) -> Scores:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every image needs at least one reference caption")
    c, _ = cider(hypotheses, references)
    b, signature = bleu4(hypotheses, references)
    return Scores({"cider": c, "bleu": b}, "cider",
                  f"CIDEr-D (pycocoevalcap, n=4, sigma=6, lowercased, punctuation stripped) / BLEU {signature}")
