"""Sentiment task: labelled text tables (TSV, CSV, JSONL) or `hf:` datasets -> one label per text.

Everything model-side is the engine's N->1 path: text encoder, bridge context c, and a
classification head Y = softmax(V c + b); the label set is read from the training data.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import datasets

from pipelines import Key, Scores, Task, UserError, read_lines
from pipelines.hub import is_hub_spec, load_hub

from .metrics import accuracy, macro_f1
from .tables import is_jsonl, read_records

AUTO_TEXT_COLUMNS = ("text", "sentence")
TABLE_SUFFIXES = (".tsv", ".csv", ".jsonl")


class SentimentTask(Task):
    kind = "n2one"
    primary_metric = "accuracy"
    data_settings = {
        "text_column": Key("auto", str, help="column (or JSONL field) holding the text; auto: `text` or `sentence`"),
        "label_column": Key("label", str, help="column (or JSONL field) holding the label"),
        "empty_text": Key("skip", str, ("skip", "error"), "an example with an empty text: skip it (counted) or stop"),
        "extra_train": Key("", str, help="more labelled training files, comma-separated, appended to data.train "
                                         "(same columns and labels; e.g. the SST train phrases for sentiment/mr)"),
    }

    # -- loading -----------------------------------------------------------------------------
    def load(self, spec: str, split: str) -> datasets.Dataset:
        """`file.tsv` / `file.csv` (header row) / `file.jsonl` (gzip accepted), or `hf:name[:config][@split]`;
        the training split also takes in the files of `data.extra_train`, after its own examples."""
        extra = [x.strip() for x in self.settings["data"]["extra_train"].split(",") if x.strip()]
        if split != "train" or not extra:
            return self._load_one(spec, split)
        return datasets.concatenate_datasets([self._load_one(s, split) for s in (spec, *extra)])

    def _load_one(self, spec: str, split: str) -> datasets.Dataset:
        if is_hub_spec(spec):
            table = load_hub(spec, split)
            columns = table.column_names
            text, label = self._text_column(columns, spec), self._label_column(columns, spec)
            rows = ((f"{spec} row {i + 1}", {text: t, label: y})
                    for i, (t, y) in enumerate(zip(table[text], table[label])))
            return self._examples(rows, text, label, spec)
        path = self.resolve(spec)
        columns, rows = read_records(path)
        return self._examples(rows, self._text_column(columns, str(path)), self._label_column(columns, str(path)),
                              str(path))

    def _text_column(self, columns: Sequence[str], where: str) -> str:
        wanted = self.settings["data"]["text_column"]
        options = AUTO_TEXT_COLUMNS if wanted == "auto" else (wanted,)
        for name in options:
            if name in columns:
                return name
        raise UserError(f"{where}: no text column {' or '.join(map(repr, options))} (columns found: "
                        f"{', '.join(columns) or 'none'}); rename the column or set data.text_column")

    def _label_column(self, columns: Sequence[str], where: str) -> str:
        wanted = self.settings["data"]["label_column"]
        if wanted not in columns:
            raise UserError(f"{where}: no label column {wanted!r} (columns found: {', '.join(columns) or 'none'}); "
                            f"rename the column or set data.label_column")
        return wanted

    def _examples(self, rows: Iterable[tuple[str, dict[str, Any]]], text_column: str, label_column: str,
                  where: str) -> datasets.Dataset:
        texts, labels, skipped = [], [], 0
        for at, record in rows:
            for column in (text_column, label_column):
                if column not in record:
                    raise UserError(f"{at}: record has no field {column!r} (fields: {', '.join(record) or 'none'}); "
                                    f"fix the record or set data.text_column / data.label_column")
            text, label = record[text_column], record[label_column]
            if text is not None and not isinstance(text, str):
                raise UserError(f"{at}: {text_column!r} is a {type(text).__name__}, expected a text (string)")
            if label is None or str(label).strip() == "":
                raise UserError(f"{at}: empty label in column {label_column!r}; every example needs a label")
            if text is None or not text.strip():
                if self.settings["data"]["empty_text"] == "error":
                    raise UserError(f"{at}: empty text in column {text_column!r}; remove the row, "
                                    f"or set data.empty_text = \"skip\" to skip such rows")
                skipped += 1
                continue
            texts.append(text.strip())
            labels.append(str(label).strip())
        if skipped:
            print(f"note: {where}: skipped {skipped} example(s) with an empty text (data.empty_text = \"skip\")",
                  file=sys.stderr)
        if not texts:
            raise UserError(f"{where}: no examples with a text; check data.text_column")
        return datasets.Dataset.from_dict({"source": texts, "target": labels})

    # -- scoring and prediction --------------------------------------------------------------
    def score(self, hypotheses: list[str], references: list[list[str]]) -> Scores:
        gold = [r[0] for r in references]
        return Scores({"accuracy": accuracy(hypotheses, gold), "macro_f1": macro_f1(hypotheses, gold)}, "accuracy",
                      "accuracy and macro-F1 (mean of per-class F1) in percent")

    def parse_inputs(self, inputs: Sequence[str]) -> list[Any]:
        """Each argument is a text, a plain text file (one text a line), or a TSV/CSV/JSONL table (its text column)."""
        out: list[Any] = []
        for item in inputs:
            path = Path(item)
            if not path.is_file():
                out.append(item)
            elif is_jsonl(path) or path.name.lower().removesuffix(".gz").endswith(TABLE_SUFFIXES):
                columns, rows = read_records(path)
                column = self._text_column(columns, str(path))
                out.extend(str(record.get(column) or "") for _, record in rows)
            else:
                out.extend(read_lines(path))
        return out
