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
    """A trained tokenizer with the special ids the engine needs."""

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], kind: str, vocab_size: int, lowercase: bool) -> "TextVocab":
        return cls(train_tokenizer(texts, kind, vocab_size, lowercase))

    @classmethod
    def load(cls, path: Path) -> "TextVocab":
        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, texts: Sequence[str], add_eos: bool = False) -> list[list[int]]:
        """Token ids for many texts at once (the Rust tokenizer runs them in parallel)."""
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        tail = [self.eos_id] if add_eos else []
        return [e.ids + tail for e in encoded]

    def decode(self, ids: Sequence[int]) -> str:
        """Text for ids, stopping at the first end-of-sequence."""
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            out.append(int(i))
        return self.tokenizer.decode(out, skip_special_tokens=True)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.id_to_token(int(i)) for i in ids]
