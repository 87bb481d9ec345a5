"""Caption files -> records (image, its captions, where it was read): JSONL, CSV/TSV and COCO captions JSON.

Image paths are relative to the data file's folder unless `data.image_dir` is set. Captions of
the same image are gathered into one record in first-seen order, so a CSV with one row per
caption and a JSONL with a list of captions give the same records.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines import UserError, read_jsonl, read_lines, require_field


@dataclass
class Record:
    image: str                       # a file path, or a key of an image cached in memory
    captions: list[str] = field(default_factory=list)
    where: str = ""                  # file:line (or file, image id) for messages


def _captions(value: Any, where: str, name: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise UserError(f"{where}: field {name!r} must be a list of caption strings (or one string)")
    return [" ".join(c.split()) for c in value if c.strip()]


def read_jsonl_records(path: Path, base: Path, image_field: str, captions_field: str) -> list[Record]:
    """One JSON object per line: {"image": "rel/path.jpg", "captions": ["...", ...]}."""
    records = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        image = require_field(row, image_field, path, number)
        if not isinstance(image, str) or not image.strip():
            raise UserError(f"{where}: field {image_field!r} must be an image path")
        records.append(Record(str(base / image), _captions(require_field(row, captions_field, path, number),
                                                              where, captions_field), where))
    return records


def read_table_records(path: Path, base: Path, image_field: str, caption_field: str) -> list[Record]:
    """CSV or TSV with a header naming the image and caption columns, one row per caption."""
    lines = read_lines(path, allow_empty_lines=True)
    tsv = ".tsv" in path.suffixes
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise UserError(f"{path}: file is empty; give a header ({image_field},{caption_field}) and rows") from None
    header = [h.strip() for h in header]
    missing = [name for name in (image_field, caption_field) if name not in header]
    if missing:
        raise UserError(f"{path}:1: header has no column {', '.join(map(repr, missing))} (columns: "
                        f"{', '.join(header)}); name the columns {image_field!r} and {caption_field!r} or set "
                        f"data.image_field / data.caption_field")
    col_image, col_caption = header.index(image_field), header.index(caption_field)
    by_image: dict[str, Record] = {}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{reader.line_num}"
        if len(row) <= max(col_image, col_caption):
            raise UserError(f"{where}: expected {len(header)} columns, found {len(row)}")
        image, caption = row[col_image].strip(), " ".join(row[col_caption].split())
        if not image:
            raise UserError(f"{where}: empty {image_field!r}; every row needs an image path")
        record = by_image.setdefault(image, Record(str(base / image), [], where))
        if caption:
            record.captions.append(caption)
    if not by_image:
        raise UserError(f"{path}: no rows after the header")
    return list(by_image.values())


def read_coco_records(path: Path, base: Path) -> list[Record]:
    """A COCO captions file: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; check the path (data paths are relative to the data root, "
                        f"S2S_DATA_DIR)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err}); expected a COCO captions file") from None
    if not isinstance(table, dict) or not isinstance(table.get("images"), list) \
            or not isinstance(table.get("annotations"), list):
        raise UserError(f"{path}: not a COCO captions file; expected {{\"images\": [...], \"annotations\": [...]}}")
    records: dict[Any, Record] = {}
    for n, image in enumerate(table["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise UserError(f"{path}: images[{n}] needs \"id\" and \"file_name\"")
        records[image["id"]] = Record(str(base / image["file_name"]), [], f"{path}: image id {image['id']}")
    for n, note in enumerate(table["annotations"]):
        if not isinstance(note, dict) or "image_id" not in note or not isinstance(note.get("caption"), str):
            raise UserError(f"{path}: annotations[{n}] needs \"image_id\" and a \"caption\" string")
        if note["image_id"] not in records:
            raise UserError(f"{path}: annotations[{n}] refers to image id {note['image_id']}, which is not in "
                            f"\"images\"; add the image or remove the caption")
        if note["caption"].strip():
            records[note["image_id"]].captions.append(" ".join(note["caption"].split()))
    return list(records.values())


def read_records(path: Path, base: Path, data: dict) -> list[Record]:
    """Records from a caption file, by its extension."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".jsonl"):
        return read_jsonl_records(path, base, data["image_field"], data["captions_field"])
    if name.endswith((".csv", ".tsv")):
        return read_table_records(path, base, data["image_field"], data["caption_field"])
    if name.endswith(".json"):
        return read_coco_records(path, base)
    raise UserError(f"{path}: unknown caption file type; give a .jsonl (image, captions), a .csv/.tsv "
                    f"(image,caption per row), a COCO captions .json, shapes:SEED or hf:NAME")
