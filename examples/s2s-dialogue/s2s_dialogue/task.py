"""Dialogue reply generation: the last few turns of a conversation in, the next turn out.

A conversation is a list of turns. Every reply turn becomes one example whose source is up to
`data.context_turns` previous turns joined with " | ". Data: the shipped café corpus
(`cafe:SPLIT`), JSONL files with one conversation a line (`{"turns": [...]}`), or `hf:NAME` with
a column of turn lists (e.g. `data.turns_field = "dialog"`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import datasets
from sacrebleu.metrics import BLEU, CHRF

from pipelines import Key, Scores, Task, UserError, read_jsonl, read_lines, require_field
from pipelines.hub import is_hub_spec, load_hub

CORPUS = Path(__file__).resolve().parent / "data"
CORPUS_PREFIX = "cafe:"
SEPARATOR = " | "


def distinct(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams over the outputs, in %; dull repetitive
    replies score low even when BLEU is fine."""
    grams = [tuple(words[i: i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return 100.0 * len(set(grams)) / len(grams) if grams else 0.0


class DialogueTask(Task):
    kind = "n2m"
    primary_metric = "bleu"
    pipelines_file = "pipelines.toml"
    data_settings = {
        "turns_field": Key("turns", str, help="JSONL / hf: field holding a conversation's list of turns"),
        "context_turns": Key(3, int, help="how many previous turns the model reads"),
        "replies": Key("second", str, ("second", "every"),
                       "which turns are targets: every second one (the answering side, 2nd, 4th...) or every "
                       "turn after the first"),
    }

    def load(self, spec: str, split: str) -> datasets.Dataset:
        field = self.settings["data"]["turns_field"]
        if is_hub_spec(spec):
            table = load_hub(spec, split)
            if field not in table.column_names:
                raise UserError(f"{spec}: no column {field!r} (columns: {', '.join(table.column_names)}); "
                                f"set data.turns_field")
            conversations = [(f"{spec} row {i + 1}", turns) for i, turns in enumerate(table[field])]
        else:
            path = CORPUS / f"{spec[len(CORPUS_PREFIX):]}.jsonl" if spec.startswith(CORPUS_PREFIX) else self.resolve(spec)
            conversations = [(f"{path}:{n}", require_field(r, field, path, n)) for n, r in read_jsonl(path)]
        sources, targets = [], []
        for where, turns in conversations:
            if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(t, str) and t.strip() for t in turns):
                raise UserError(f"{where}: {field!r} must be a list of at least two non-empty texts (the turns)")
            for source, target in self.pairs(turns):
                sources.append(source)
                targets.append(target)
        return datasets.Dataset.from_dict({"source": sources, "target": targets})

    def pairs(self, turns: list[str]) -> list[tuple[str, str]]:
        """(context, reply) for each reply turn of one conversation."""
        data = self.settings["data"]
        step = 2 if data["replies"] == "second" else 1
        return [(self.context(turns[:i]), " ".join(turns[i].split())) for i in range(1, len(turns), step)]

    def context(self, turns: Sequence[str]) -> str:
        keep = max(self.settings["data"]["context_turns"], 1)
        return SEPARATOR.join(" ".join(t.split()) for t in turns[-keep:])

    def score(self, hypotheses: list[str], references: list[list[str]]) -> Scores:
        streams = [list(r) for r in zip(*references)]
        bleu, chrf = BLEU(), CHRF()
        values = {"bleu": bleu.corpus_score(hypotheses, streams).score,
                  "chrf": chrf.corpus_score(hypotheses, streams).score,
                  "distinct1": distinct(hypotheses, 1), "distinct2": distinct(hypotheses, 2)}
        return Scores(values, "bleu", f"BLEU {bleu.get_signature()} / chrF2 {chrf.get_signature()}")

    def parse_inputs(self, inputs: Sequence[str]) -> list[Any]:
        """Each input is a conversation so far, turns separated by " | " (or a file of them, one a line)."""
        conversations: list[str] = []
        for item in inputs:
            path = Path(item)
            conversations.extend(read_lines(path) if path.is_file() else [item])
        return [self.context([t for t in c.split("|") if t.strip()]) for c in conversations]
