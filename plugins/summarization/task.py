"""Summarization task: JSONL (or `hf:`) documents and summaries, source truncation, ROUGE through rouge-score.

Field names are set per pipeline (`data.source_field`, `data.target_field`, and
`data.references_field` for extra reference summaries, e.g. AESLC's annotator
subjects). A summary or reference field may hold one string or a list of strings;
the model trains on the first summary, and scoring takes the best match over all of
a record's references, as rouge-score does with several targets.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Sequence

import datasets

from pipelines import Key, Scores, Task, UserError, read_jsonl, read_lines, require_field
from pipelines.hub import is_hub_spec, load_hub

from .metrics import rouge

WORD = re.compile(r"\S+")


def truncate_words(text: str, limit: int) -> tuple[str, bool]:
    """The text up to the end of its `limit`-th whitespace-separated word (line breaks kept), and whether it was cut."""
    if limit <= 0:
        return text, False
    for count, match in enumerate(WORD.finditer(text), start=1):
        if count == limit:
            cut = text[: match.end()]
            return cut, len(cut.rstrip()) < len(text.rstrip())
    return text, False


def _is_file(path: Path) -> bool:
    """Whether an input names a file; a long document is not a valid file name at all."""
    try:
        return path.is_file()
    except OSError:
        return False


class SummarizationTask(Task):
    kind = "n2m"
    primary_metric = "rougeL"
    data_settings = {
        "source_field": Key("document", str, help="JSONL / hf: field holding the document"),
        "target_field": Key("summary", str, help="JSONL / hf: field holding the summary (a string or a list)"),
        "references_field": Key("", str, help="optional field with more reference summaries to score against "
                                              "(a string or a list); records without it use the summary"),
        "max_source_tokens": Key(0, int, help="truncate documents to this many whitespace-separated words "
                                              "(0 = no limit); truncations are counted and reported"),
        "max_validation_examples": Key(0, int, help="validate during training on the first N records of "
                                                    "data.validation only (0 = all); evaluation uses them all"),
    }

    def __init__(self, settings, data_root: Path):
        super().__init__(settings, data_root)
        self.truncated: dict[str, tuple[int, int]] = {}    # split -> (documents truncated, documents)

    def load(self, spec: str, split: str) -> datasets.Dataset:
        """`x.jsonl[.gz]` or `hf:name`: one record per document, with its summary (and references)."""
        data = self.settings["data"]
        if is_hub_spec(spec):
            table = load_hub(spec, split)
            for name in (data["source_field"], data["target_field"]):
                if name not in table.column_names:
                    raise UserError(f"{spec}: no column {name!r} (columns: {', '.join(table.column_names)}); "
                                    f"set data.source_field / data.target_field")
            records = ((n, dict(r)) for n, r in enumerate(table, start=1))
            where = spec
        else:
            path = self.resolve(spec)
            if not (path.suffix == ".jsonl" or path.name.endswith(".jsonl.gz")):
                raise UserError(f"{spec}: summarization data must be JSON Lines (.jsonl or .jsonl.gz) with the fields "
                                f"{data['source_field']!r} and {data['target_field']!r}")
            records = read_jsonl(path)
            where = str(path)
        limit = data["max_validation_examples"] if split == "validation" else 0
        sources, targets, references = [], [], []
        for number, record in records:
            if limit and len(sources) >= limit:
                break
            src, tgt, refs = self._record(record, where, number)
            sources.append(src)
            targets.append(tgt)
            references.append(refs)
        sources = self._truncate(sources, where, split)
        return datasets.Dataset.from_dict({"source": sources, "target": targets, "references": references})

    def _record(self, record: dict[str, Any], where: str, number: int) -> tuple[str, str, list[str]]:
        data = self.settings["data"]
        path = Path(where)
        document = require_field(record, data["source_field"], path, number)
        if not isinstance(document, str):
            raise UserError(f"{where}:{number}: field {data['source_field']!r} must be a string, "
                            f"found {type(document).__name__}")
        if not document.strip():
            raise UserError(f"{where}:{number}: empty document (field {data['source_field']!r}); "
                            f"remove the record or give it a text")
        summaries = self._texts(require_field(record, data["target_field"], path, number), data["target_field"],
                                where, number)
        references = summaries
        if data["references_field"] and record.get(data["references_field"]) is not None:
            references = self._texts(record[data["references_field"]], data["references_field"], where, number)
        return document, summaries[0], references

    @staticmethod
    def _texts(value: Any, field: str, where: str, number: int) -> list[str]:
        """A summary/reference field: one string or a non-empty list of strings, none of them empty."""
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise UserError(f"{where}:{number}: field {field!r} must be a string or a list of strings, "
                            f"found {value!r:.60}")
        if not all(t.strip() for t in texts):
            raise UserError(f"{where}:{number}: empty summary in field {field!r}; remove the record or fill it in")
        return texts

    def _truncate(self, documents: list[str], where: str, split: str) -> list[str]:
        """Cut documents to data.max_source_tokens words; count them and report the count on stderr."""
        limit = self.settings["data"]["max_source_tokens"]
        out, count = [], 0
        for doc in documents:
            text, cut = truncate_words(doc, limit)
            out.append(text)
            count += cut
        self.truncated[split] = (count, len(documents))
        if count:
            print(f"note: {where}: truncated {count} of {len(documents)} documents to data.max_source_tokens = "
                  f"{limit} words", file=sys.stderr)
        return out

    def parse_inputs(self, inputs: Sequence[str]) -> list[Any]:
        """Each argument is a document, a text file of one document per line, or a JSONL file of records."""
        field = self.settings["data"]["source_field"]
        documents: list[str] = []
        for item in inputs:
            path = Path(item)
            if not _is_file(path):
                documents.append(item)
            elif path.suffix == ".jsonl" or path.name.endswith(".jsonl.gz"):
                documents.extend(str(require_field(r, field, path, n)) for n, r in read_jsonl(path))
            else:
                documents.extend(read_lines(path))
        return self._truncate(documents, "input", "predict")

    def score(self, hypotheses: list[str], references: list[list[str]]) -> Scores:
        values = rouge(hypotheses, references)
        return Scores(values, "rougeL", "rouge-score: ROUGE-1/2/L F1 x 100, Porter stemming, "
                                        "best reference per record, averaged over records")
