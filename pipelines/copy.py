"""Copy attention (pointer-generator, See et al. 2017): the extended vocabulary and the output mixture.

The decoder's output distribution becomes
    P(w) = p_gen * P_vocab(w) + (1 - p_gen) * sum_{i: x_i = w} a_i
where a is the attention over source positions and p_gen a learned switch. A source
token the target vocabulary lacks (an <unk> there) gets a temporary id V + k, k being
its index in its example's list of such tokens ("OOVs"); a batch's extended vocabulary
is V + the longest OOV list in it. Source and target tokens are matched by their
token strings (BPE pieces, words or characters, with the tokenizer's "▁" word marks),
so copy works with a joint vocabulary or two separate ones, as long as both sides
use the same tokenizer kind. Decoding maps ids >= V back to the example's OOV strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from .errors import UserError
from .task import SourceSide, TargetSide, pad_ids
from .tokenization import TextVocab

WORD_MARK = "▁"


@dataclass
class CopySource:
    """One example's source in the target's extended vocabulary."""

    ids: list[int]           # per source position: a target-vocabulary id, or V + k for the k-th OOV
    oovs: list[str]          # token strings of the temporary ids, in order


def require_text(source: SourceSide, target: TargetSide) -> tuple[TextVocab, TextVocab]:
    """The two tokenizers copy works over, or a UserError saying why copy cannot be used."""
    src, tgt = getattr(source, "vocab", None), getattr(target, "vocab", None)
    if not isinstance(src, TextVocab) or not isinstance(tgt, TextVocab):
        raise UserError("model.copy = true needs a text source and a text target (copy points at source tokens); "
                        "set model.copy = false for this task")
    return src, tgt


def _unknown_pieces(vocab: TextVocab, texts: Sequence[str]) -> list[dict[int, str]]:
    """Per text, {position: token string} for the positions that are <unk> in the vocabulary.

    A piece the tokenizer knows but this side's vocabulary drops (a joint tokenizer restricted
    to one side's types) is its token string. A piece the tokenizer itself cannot name is the
    source text under the token's offsets, normalized like the tokenizer does (e.g. lowercased),
    with a leading space written as the "▁" word mark (and the first token marked, as Metaspace
    prepends one), so it decodes like a vocabulary token.
    """
    out: list[dict[int, str]] = []
    normalizer = vocab.tokenizer.normalizer
    for text, enc in zip(texts, vocab.tokenizer.encode_batch(list(texts), add_special_tokens=False)):
        pieces: dict[int, str] = {}
        model_ids = vocab.model_ids(enc.ids)
        for i, (token_id, model_id, (start, end)) in enumerate(zip(enc.ids, model_ids, enc.offsets)):
            if model_id != vocab.unk_id:
                continue
            if token_id != vocab.unk_id:
                pieces[i] = vocab.tokenizer.id_to_token(token_id)
                continue
            surface = text[start:end]
            body = surface.lstrip()
            body = normalizer.normalize_str(body) if normalizer is not None and body else body
            marked = body != surface or (i == 0 and start == 0)
            pieces[i] = (WORD_MARK if marked else "") + body
        out.append(pieces)
    return out


def extend_sources(source: SourceSide, target: TargetSide, texts: Sequence[str], items: Sequence[Sequence[int]]
                   ) -> list[CopySource]:
    """Raw source texts and their encoded ids (possibly cut short) -> ids in the target's extended vocabulary."""
    src, tgt = require_text(source, target)
    size = len(tgt)
    unknown = _unknown_pieces(src, texts)
    same = src.same_ids(tgt)
    result = []
    for ids, pieces in zip(items, unknown):
        oov_index: dict[str, int] = {}
        out = []
        for i, token_id in enumerate(ids):
            if token_id != src.unk_id:
                mapped = token_id if same else tgt.token_to_id(src.id_to_token(token_id))
                if mapped is not None and mapped != tgt.unk_id:
                    out.append(mapped)
                    continue
                piece = src.id_to_token(token_id)
            else:
                piece = pieces.get(i)
                if piece is None:          # an empty source encoded as a lone <unk>
                    out.append(tgt.unk_id)
                    continue
            out.append(size + oov_index.setdefault(piece, len(oov_index)))
        result.append(CopySource(out, list(oov_index)))
    return result


def extend_targets(target: TargetSide, texts: Sequence[str], targets: Sequence[Sequence[int]],
                   sources: Sequence[CopySource]) -> list[list[int]]:
    """Target ids with each <unk> that its source can copy replaced by the source OOV's temporary id."""
    tgt = target.vocab
    size = len(tgt)
    todo = [i for i, ids in enumerate(targets) if tgt.unk_id in ids and sources[i].oovs]
    result = [list(ids) for ids in targets]
    for i, pieces in zip(todo, _unknown_pieces(tgt, [texts[i] for i in todo])):
        index = {piece: k for k, piece in enumerate(sources[i].oovs)}
        for position, piece in pieces.items():
            if position < len(result[i]) and piece in index:
                result[i][position] = size + index[piece]
    return result


def collate(sources: Sequence[CopySource]) -> tuple[Tensor, int]:
    """Padded extended source ids (B, S) and the number of temporary ids the batch needs."""
    return pad_ids([s.ids for s in sources]), max((len(s.oovs) for s in sources), default=0)


def decode(vocab: TextVocab, ids: Sequence[int], oovs: Sequence[str]) -> str:
    """Text for extended ids (stopping at </s>); ids >= V are the example's OOV token strings."""
    size = len(vocab)
    ids = [int(i) for i in ids]
    if all(i < size for i in ids):
        return vocab.decode(ids)
    specials = {vocab.pad_id, vocab.unk_id, vocab.bos_id}
    pieces = []
    for i in ids:
        if i == vocab.eos_id:
            break
        if i >= size:
            if i - size < len(oovs):
                pieces.append(oovs[i - size])
        elif i not in specials:
            pieces.append(vocab.id_to_token(i))
    return vocab.tokenizer.decoder.decode(pieces) if vocab.tokenizer.decoder is not None else "".join(pieces)


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The copy arguments of `Seq2Seq.forward` found in a batch (none when copy is off)."""
    if "copy_ids" not in batch:
        return {}
    return {"copy_ids": batch["copy_ids"], "extra_vocab": batch["extra_vocab"]}


def mix(logits: Tensor, attention: Tensor, p_gen: Tensor, source_ids: Tensor, extra: int) -> Tensor:
    """Vocabulary logits (B, T, V), attention (B, T, S), switch (B, T, 1), extended source ids (B, S)
    -> log-probabilities over the extended vocabulary (B, T, V + extra)."""
    probs = torch.softmax(logits.float(), dim=-1) * p_gen
    if extra:
        probs = torch.nn.functional.pad(probs, (0, extra))
    index = source_ids.to(probs.device).unsqueeze(1).expand(-1, attention.size(1), -1)
    probs = probs.scatter_add(-1, index, (1.0 - p_gen) * attention.float())
    return probs.clamp_min(1e-12).log()
