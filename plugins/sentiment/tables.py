"""Reading labelled text tables: TSV or CSV with a header row, or JSON Lines; every record keeps its file:line.

The delimiter is taken from the header (tabs if it has any, else commas), so a
`.tsv` written with commas still reads. A row that does not split into as many
fields as the header is an error naming file and line, which is how mixed
delimiters (or an unquoted comma inside a CSV text) are caught.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterator

from pipelines import UserError, read_jsonl, read_lines

NAMES = {"\t": "tabs", ",": "commas"}


def is_jsonl(path: Path) -> bool:
    return path.name.lower().removesuffix(".gz").endswith(".jsonl")


def read_records(path: Path) -> tuple[list[str], Iterator[tuple[str, dict[str, Any]]]]:
    """(column names, then (\"file:line\", record) for each data row)."""
    if is_jsonl(path):
        records = list(read_jsonl(path))
        return list(records[0][1]), ((f"{path}:{n}", r) for n, r in records)
    return _read_delimited(path)


def _split(line: str, delimiter: str) -> list[str]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    return next(csv.reader([line], delimiter=delimiter, quoting=quoting))


def _read_delimited(path: Path) -> tuple[list[str], Iterator[tuple[str, dict[str, Any]]]]:
    numbered = [(n, line) for n, line in enumerate(read_lines(path, allow_empty_lines=True), start=1) if line.strip()]
    if not numbered:
        raise UserError(f"{path}: no header row; the first line must name the columns (e.g. label<TAB>sentence)")
    header_line, header = numbered[0]
    fallback = "," if path.name.lower().removesuffix(".gz").endswith(".csv") else "\t"
    delimiter = "\t" if "\t" in header else "," if "," in header else fallback
    columns = [c.strip() for c in _split(header, delimiter)]
    other = "," if delimiter == "\t" else "\t"
    rows = []
    for number, line in numbered[1:]:
        fields = _split(line, delimiter)
        if len(fields) != len(columns):
            if other in line:
                hint = (f"the file mixes delimiters: the header (line {header_line}) is split by {NAMES[delimiter]} "
                        f"but this line has {NAMES[other]}; use one delimiter throughout")
            else:
                hint = (f"every row needs exactly {len(columns)} fields split by {NAMES[delimiter]} like the header "
                        f"(line {header_line}); a TSV text may not contain a tab, a CSV text with commas must be quoted")
            raise UserError(f"{path}:{number}: {len(fields)} field(s) but the header has {len(columns)} "
                            f"({', '.join(columns)}); {hint}")
        rows.append((f"{path}:{number}", dict(zip(columns, fields))))
    if not rows:
        raise UserError(f"{path}: only a header, no examples")
    return columns, iter(rows)
