"""The transcript normalisation rule, applied to training targets, references and hypotheses alike.

Rule (`normalize_text`), in order:
1. Unicode NFKC, then lowercase.
2. Curly apostrophes become `'`.
3. Every character that is not a letter, a digit or an apostrophe becomes a space
   (so punctuation and hyphens split words: "well-known." -> "well known").
4. An apostrophe survives only inside a word ("don't" stays; quotes like 'this' go).
5. Runs of spaces collapse to one; leading and trailing spaces go.

Digits are kept as written (VCTK has none); spoken-digit labels are spelled as words by
`label_text`, so "3" is transcribed "three".
"""
from __future__ import annotations

import re
import unicodedata

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_NOT_WORD = re.compile(r"[^\w']|_")
_LOOSE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def normalize_text(text: str) -> str:
    """Lowercase words without punctuation, single-spaced (the rule in this module's docstring)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    text = _NOT_WORD.sub(" ", text)
    text = _LOOSE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def label_text(label: str) -> str:
    """A spoken-digit file label as its transcript: a digit string is spelled word by word ("31" -> "three one")."""
    if label.isdigit():
        return " ".join(DIGIT_WORDS[int(d)] for d in label)
    return normalize_text(label.replace("-", " "))
