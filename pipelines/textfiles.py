"""Reading the user's text files: gzip or plain, strict UTF-8, errors that name file and line."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError


def _open_bytes(path: Path):
    if not path.exists():
        raise UserError(f"{path}: file not found; check the path (data paths are relative to the data root, S2S_DATA_DIR)")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a file")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_lines(path: Path, allow_empty_lines: bool = False) -> list[str]:
    """All lines of a text file, without line ends; rejects bad UTF-8, empty files and empty lines."""
    lines = []
    with _open_bytes(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"{path}:{number}: not valid UTF-8 (byte {err.start}); re-encode the file as UTF-8") from None
            line = line.rstrip("\r\n")
            if not line.strip() and not allow_empty_lines:
                raise UserError(f"{path}:{number}: empty line; remove it (in parallel files, remove the pair)")
            lines.append(line)
    if not lines:
        raise UserError(f"{path}: file is empty; give a file with one example per line")
    return lines


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line of a JSON Lines file."""
    found = False
    for number, line in enumerate(read_lines(path, allow_empty_lines=True), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{number}: not valid JSON ({err.msg}); each line must be one JSON object") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
        found = True
        yield number, record
    if not found:
        raise UserError(f"{path}: no records; give one JSON object per line")


def require_field(record: dict[str, Any], field: str, path: Path, number: int) -> Any:
    """A record's field, or an error naming the field, file and line."""
    if field not in record:
        raise UserError(f"{path}:{number}: record has no field {field!r} (fields: {', '.join(record) or 'none'}); "
                        f"fix the record or set the field name in the pipeline's [data] section")
    return record[field]
