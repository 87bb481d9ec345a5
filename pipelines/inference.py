"""Decoding and scoring a split with a trained run: batched greedy or beam search, then the task's metrics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import copy as pointer
from .batching import plan_eval_batches
from .examples import EncodedSplit
from .hardware import autocast
from .search import Hypothesis, beam_search, greedy, max_lengths
from .task import Scores
from .tokenization import TextVocab


@dataclass
class Prediction:
    text: str
    score: float                               # log-probability (sequences) or probability (labels)
    alternatives: list[tuple[str, float]]      # n-best list, or every class with its probability
    tokens: list[int] | None = None
    attention: torch.Tensor | None = None


@torch.no_grad()
def predict_items(run, sources: list[Any], beam: int | None = None, n_best: int | None = None,
                  keep_attention: bool = False, raw_sources: list[Any] | None = None) -> list[Prediction]:
    """Predictions for encoded source items, in input order.

    A copy model (model.copy) also needs the raw source texts: copied out-of-vocabulary tokens
    come back as their source strings.
    """
    model, target, search = run.model, run.target, run.settings["search"]
    model.eval()
    beam = search["beam"] if beam is None else beam
    n_best = search["n_best"] if n_best is None else n_best
    lengths = [run.source.length(s) for s in sources]
    copy = getattr(getattr(model, "decoder", None), "copy", False)
    if copy and raw_sources is None:
        raise ValueError("predict_items: a copy model needs raw_sources")
    results: list[Prediction | None] = [None] * len(sources)
    with autocast(run.device, run.precision):   # the run's training precision (fp32 on the CPU)
        for index in plan_eval_batches(lengths, search["batch_size"]):
            src, src_len = run.source.collate([sources[i] for i in index])
            src = src.to(run.device, non_blocking=True)   # lengths stay on the CPU
            if target.kind == "label":
                probs = torch.softmax(model(src, src_len).float(), dim=-1)
                for row, i in enumerate(index):
                    p = probs[row].tolist()
                    best = max(range(len(p)), key=p.__getitem__)
                    results[i] = Prediction(target.decode(best), p[best], [(target.decode(k), v) for k, v in enumerate(p)])
                continue
            memory = model.encode(src, src_len)
            decode = target.decode
            if copy:
                extended = pointer.extend_sources(run.source, target, [raw_sources[i] for i in index],
                                                  [sources[i] for i in index])
                copy_ids, memory.extra_vocab = pointer.collate(extended)
                memory.copy_ids = copy_ids.to(run.device)
            limits = max_lengths(src_len, search["max_length_ratio"], search["max_length"])
            rules = dict(min_length=search["min_length"], no_repeat_ngram=search["no_repeat_ngram"],
                         coverage_beta=search["coverage_penalty"])
            if beam <= 1:
                hyps = [[h] for h in greedy(model, memory, limits, TextVocab.bos_id, TextVocab.eos_id, keep_attention,
                                            **rules)]
            else:
                hyps = beam_search(model, memory, limits, TextVocab.bos_id, TextVocab.eos_id, beam,
                                   search["length_penalty"], n_best, **rules)
            for row, i in enumerate(index):
                if copy:
                    decode = lambda ids, oovs=extended[row].oovs: pointer.decode(target.vocab, ids, oovs)
                best: Hypothesis = hyps[row][0]
                results[i] = Prediction(decode(best.tokens), best.score,
                                        [(decode(h.tokens), h.score) for h in hyps[row]], best.tokens, best.attention)
    return results


def evaluate_split(run, split: EncodedSplit, beam: int | None = None) -> tuple[Scores, list[Prediction]]:
    predictions = predict_items(run, split.sources, beam=beam, n_best=1, raw_sources=split.raw_sources)
    scores = run.task.score([p.text for p in predictions], split.references)
    return scores, predictions
