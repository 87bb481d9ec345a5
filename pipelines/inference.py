"""Decoding and scoring a split with a trained run: batched greedy or beam search, then the task's metrics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from . import copy as pointer
from .batching import plan_eval_batches
from .ctc import best_path, sequence_log_probs
from .errors import UserError
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
    rules = dict(min_length=search["min_length"], no_repeat_ngram=search["no_repeat_ngram"],
                 coverage_beta=search["coverage_penalty"])
    ctc_weight = search["ctc_weight"]
    if not 0.0 <= ctc_weight <= 1.0:
        raise UserError(f"search.ctc_weight = {ctc_weight}: must be in [0, 1] (0 = attention only, 1 = CTC only)")
    if ctc_weight > 0.0 and target.kind != "label" and (copy or getattr(model, "ctc", None) is None):
        raise UserError(f"search.ctc_weight = {ctc_weight} needs a model trained with a CTC head "
                        f"(train.ctc_weight > 0) and without model.copy; set search.ctc_weight = 0")
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
            hyps = None   # search.ctc_weight = 1: the CTC head alone, no attention search
            if ctc_weight < 1.0 and beam <= 1:
                hyps = [[h] for h in greedy(model, memory, limits, TextVocab.bos_id, TextVocab.eos_id, keep_attention,
                                            **rules)]
            elif ctc_weight < 1.0:
                hyps = beam_search(model, memory, limits, TextVocab.bos_id, TextVocab.eos_id, beam,
                                   search["length_penalty"], beam if ctc_weight > 0.0 else n_best, **rules)
            if ctc_weight > 0.0:
                hyps = ctc_rescore(model, memory, hyps, ctc_weight, n_best)
            for row, i in enumerate(index):
                if copy:
                    decode = lambda ids, oovs=extended[row].oovs: pointer.decode(target.vocab, ids, oovs)
                best: Hypothesis = hyps[row][0]
                results[i] = Prediction(decode(best.tokens), best.score,
                                        [(decode(h.tokens), h.score) for h in hyps[row]], best.tokens, best.attention)
    return results


@torch.no_grad()
def ctc_rescore(model, memory, hyps: list[list[Hypothesis]] | None, weight: float, n_best: int) -> list[list[Hypothesis]]:
    """Decoding with the joint CTC head (`search.ctc_weight` = w > 0), one list per batch row, best first.

    w = 1: the CTC head's best path alone (greedy: arg-max per encoder step, repeats merged, blanks dropped);
    the attention decoder is not run. 0 < w < 1: the attention search's hypotheses (beam search keeps its
    whole beam for this) plus the CTC best path are rescored by (1 - w) log P_att(y | x) + w log P_ctc(y | x),
    both whole-sequence log-probabilities (the attention one with </s>, from one teacher-forced decoder pass;
    no length penalty), as in hybrid CTC/attention decoding (Watanabe et al., 2017), here over an n-best list
    rather than inside the beam."""
    eos = TextVocab.eos_id
    log_probs = torch.log_softmax(model.ctc.proj(memory.states).float(), dim=-1)
    lengths = memory.mask.sum(1)
    paths = best_path(log_probs, lengths)
    if hyps is None:
        scores = sequence_log_probs(log_probs, lengths, paths).tolist()
        return [[Hypothesis(p + [eos], s)] for p, s in zip(paths, scores)]
    rows, candidates = [], []
    for b, (found, path) in enumerate(zip(hyps, paths)):
        seen = set()
        for tokens in [h.tokens for h in found] + [path + [eos]]:
            body = tuple(t for t in tokens if t != eos)
            if body not in seen:
                seen.add(body)
                rows.append(b)
                candidates.append(list(body))
    index = torch.tensor(rows, device=memory.states.device)
    ctc = sequence_log_probs(log_probs.index_select(0, index), lengths.index_select(0, index), candidates)
    width = max(len(c) for c in candidates) + 1
    inputs = torch.zeros(len(candidates), width, dtype=torch.long, device=index.device)
    gold = torch.zeros_like(inputs)
    for i, c in enumerate(candidates):
        inputs[i, : len(c) + 1] = torch.tensor([TextVocab.bos_id] + c)
        gold[i, : len(c) + 1] = torch.tensor(c + [eos])
    logits, _ = model.decoder(inputs, memory.select(index))
    token_logp = torch.log_softmax(logits.float(), dim=-1).gather(2, gold.unsqueeze(-1)).squeeze(-1)
    attention = (token_logp * (gold != 0)).sum(1)
    joint = ((1.0 - weight) * attention + weight * ctc).tolist()
    ranked: list[list[tuple[float, list[int]]]] = [[] for _ in hyps]
    for b, c, score in zip(rows, candidates, joint):
        ranked[b].append((score, c + [eos]))
    return [[Hypothesis(tokens, score) for score, tokens in sorted(r, key=lambda x: -x[0])[:n_best]] for r in ranked]


def evaluate_split(run, split: EncodedSplit, beam: int | None = None) -> tuple[Scores, list[Prediction]]:
    predictions = predict_items(run, split.sources, beam=beam, n_best=1, raw_sources=split.raw_sources)
    scores = run.task.score([p.text for p in predictions], split.references)
    return scores, predictions
