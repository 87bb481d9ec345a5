"""Subword, word and character tokenizers (Hugging Face `tokenizers`), trained on training text.

All three split on whitespace first and mark word starts with "▁" (Metaspace), so
decoding is the exact inverse of encoding and detokenized output is what metrics see.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = [PAD, UNK, BOS, EOS]
ENCODE_CHUNK = 2048   # texts per encode_batch call: bounds the Encoding objects held at once


def train_tokenizer(texts: Iterable[str], kind: str, vocab_size: int, lowercase: bool) -> Tokenizer:
    """Train a `bpe`, `word` or `char` tokenizer whose ids 0-3 are pad, unk, bos, eos."""
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    elif kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
        # Punctuation becomes its own word; Metaspace's "▁" marks keep decoding exact.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    elif kind == "char":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(vocab_size=1_000_000, special_tokens=SPECIALS, show_progress=False)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(), pre_tokenizers.Split(Regex("."), behavior="isolated")])
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


class TextVocab:
    """A trained tokenizer with the special ids the engine needs.

    With `keep` (tokenizer ids, the four specials first), the model sees only those types, renumbered
    0..len(keep)-1, and every other piece reads as <unk>: a joint tokenizer then gives each side an
    embedding and output layer over the types that side's training text uses, as OpenNMT-py builds
    per-side vocabularies from one SentencePiece model (on Multi30k de-en, 8k joint pieces leave
    about 5.5k source and 4.4k target types, so the output layer shrinks by almost half).
    """

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def __init__(self, tokenizer: Tokenizer, keep: Sequence[int] | None = None):
        self.tokenizer = tokenizer
        self.keep = list(keep) if keep is not None else None
        if self.keep is not None:
            if self.keep[:4] != [0, 1, 2, 3]:
                raise ValueError("TextVocab: `keep` must start with the special ids 0, 1, 2, 3")
            self._to_model = [self.unk_id] * tokenizer.get_vocab_size()
            for model_id, token_id in enumerate(self.keep):
                self._to_model[token_id] = model_id

    @classmethod
    def train(cls, texts: Iterable[str], kind: str, vocab_size: int, lowercase: bool) -> "TextVocab":
        return cls(train_tokenizer(texts, kind, vocab_size, lowercase))

    @classmethod
    def load(cls, path: Path, keep: Sequence[int] | None = None) -> "TextVocab":
        return cls(Tokenizer.from_file(str(path)), keep)

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))

    def restrict(self, texts: Sequence[str]) -> "TextVocab":
        """The same tokenizer keeping only the specials and the types that occur in `texts`."""
        used = {i for ids in TextVocab(self.tokenizer).encode(texts) for i in ids}
        return TextVocab(self.tokenizer, [0, 1, 2, 3] + sorted(used - {0, 1, 2, 3}))

    def __len__(self) -> int:
        return len(self.keep) if self.keep is not None else self.tokenizer.get_vocab_size()

    def model_ids(self, token_ids: Sequence[int]) -> list[int]:
        """Tokenizer ids -> the model's ids (the identity without `keep`)."""
        if self.keep is None:
            return list(token_ids)
        lookup = self._to_model
        return [lookup[i] for i in token_ids]

    def id_to_token(self, model_id: int) -> str | None:
        """The token string of a model id; None beyond the vocabulary (a copy model's temporary ids)."""
        if self.keep is not None:
            return self.tokenizer.id_to_token(self.keep[model_id]) if model_id < len(self.keep) else None
        return self.tokenizer.id_to_token(model_id)

    def token_to_id(self, token: str) -> int | None:
        """The model id of a token string; None if the tokenizer lacks it, <unk> if this side drops it."""
        token_id = self.tokenizer.token_to_id(token)
        return None if token_id is None else self.model_ids([token_id])[0]

    def same_ids(self, other: "TextVocab") -> bool:
        """Whether a model id means the same token in both vocabularies."""
        return self is other or (self.keep == other.keep and self.tokenizer.get_vocab() == other.tokenizer.get_vocab())

    def encode(self, texts: Sequence[str], add_eos: bool = False) -> list[list[int]]:
        """Token ids for many texts, a chunk at a time (the Rust tokenizer runs each chunk in parallel).

        Chunks bound the peak memory: each Encoding carries token strings, offsets and masks that
        are thrown away here (without chunks, encoding Multi30k's training side held ~100 MB at once).
        """
        texts = list(texts)
        tail = [self.eos_id] if add_eos else []
        out: list[list[int]] = []
        for start in range(0, len(texts), ENCODE_CHUNK):
            encoded = self.tokenizer.encode_batch_fast(texts[start: start + ENCODE_CHUNK], add_special_tokens=False)
            out.extend(self.model_ids(e.ids) + tail for e in encoded)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Text for ids, stopping at the first end-of-sequence."""
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            out.append(int(i))
        if self.keep is not None:
            out = [self.keep[i] for i in out]
        return self.tokenizer.decode(out, skip_special_tokens=True)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.id_to_token(int(i)) for i in ids]
