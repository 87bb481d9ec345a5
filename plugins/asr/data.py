"""Loaders: audio manifests (TSV with a header, or JSONL) and folders of spoken-digit clips -> (audio, text) rows.

Manifest audio paths are relative to the manifest's folder. A spec may end in `@train`, `@validation`
or `@test` to take a deterministic part of one file: every `holdout_every`-th row (1-based rows
N, 2N, ...) is held out for validation/test and the rest is train, as for the VCTK speaker, which has
no official split.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines import UserError, read_jsonl, read_lines, require_field

from .digits import scan_clips
from .text import label_text, normalize_text

PARTS = ("train", "validation", "test")


@dataclass
class Row:
    audio: Path
    text: str
    where: str       # "manifest:line", or "" for a clip found in a folder


def split_part(spec: str) -> tuple[str, str]:
    """`path@part` -> (path, part); no suffix -> (path, "")."""
    body, sep, part = spec.rpartition("@")
    if not sep or "/" in part:
        return spec, ""
    if part not in PARTS:
        raise UserError(f"{spec}: unknown part @{part}; use @train, @validation or @test")
    return body, part


def select_part(rows: list[Row], part: str, every: int) -> list[Row]:
    if not part:
        return rows
    if every < 2:
        raise UserError(f"@{part} needs data.holdout_every >= 2 (every N-th row is held out), got {every}")
    held = [i % every == every - 1 for i in range(len(rows))]
    return [r for r, h in zip(rows, held) if h == (part != "train")]


def _audio_path(manifest: Path, number: int, value: object) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{manifest}:{number}: the audio path is empty or not a string; give a path to a WAV/FLAC file")
    path = Path(value.strip()).expanduser()
    path = path if path.is_absolute() else manifest.parent / path
    if not path.is_file():
        raise UserError(f"{manifest}:{number}: audio file {path} not found; paths are relative to the manifest's folder")
    return path


def _audio_field(columns: list[str], wanted: str, where: str) -> str:
    options = [wanted] if wanted else ["audio", "path"]
    for name in options:
        if name in columns:
            return name
    raise UserError(f"{where}: no audio column {' or '.join(map(repr, options))} (columns: {', '.join(columns)}); "
                    f"set data.audio_field")


def read_manifest(path: Path, audio_field: str, text_field: str) -> list[Row]:
    """Rows of a TSV manifest (header line naming the columns) or a JSONL one (one object per line)."""
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a manifest file, or a folder of {{digit}}_{{speaker}}_{{n}}.wav clips")
    rows = []
    if path.suffix == ".jsonl" or path.name.endswith(".jsonl.gz"):
        for number, record in read_jsonl(path):
            name = _audio_field(list(record), audio_field, f"{path}:{number}")
            text = require_field(record, text_field, path, number)
            rows.append(Row(_audio_path(path, number, record[name]), str(text), f"{path}:{number}"))
        return rows
    lines = read_lines(path)
    header = lines[0].split("\t")
    name = _audio_field(header, audio_field, f"{path}:1")
    if text_field not in header:
        raise UserError(f"{path}:1: no {text_field!r} column in the header (columns: {', '.join(header)}); "
                        f"a manifest is tab-separated with a header line, e.g. audio<TAB>text")
    a, t = header.index(name), header.index(text_field)
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(header):
            raise UserError(f"{path}:{number}: {len(cells)} tab-separated fields, the header has {len(header)}")
        rows.append(Row(_audio_path(path, number, cells[a]), cells[t], f"{path}:{number}"))
    if not rows:
        raise UserError(f"{path}: no rows after the header; add one line per clip")
    return rows


def read_clip_folder(folder: Path) -> list[Row]:
    """One row per `{label}_{speaker}_{n}` clip; a digit label is transcribed as its word ("3" -> "three")."""
    return [Row(c.path, label_text(c.label), "") for c in scan_clips(folder)]


def normalized(rows: list[Row]) -> list[Row]:
    """Rows with their transcripts normalised; an empty transcript is an error naming its line."""
    out = []
    for row in rows:
        text = normalize_text(row.text)
        if not text:
            raise UserError(f"{row.where or row.audio}: transcript {row.text!r} is empty after normalisation "
                            f"(lowercase, punctuation removed); give the spoken words")
        out.append(Row(row.audio, text, row.where))
    return out

