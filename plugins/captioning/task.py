"""Image captioning (1->N): images in, captions out, scored with CIDEr (primary) and BLEU-4 on all references.

Training rows are one (image, caption) pair per caption; validation and test rows are one per
image, with every caption of the image as its references. Data specs: a JSONL, CSV/TSV or
COCO captions JSON file, `shapes:SEED[@SPLIT]` (the synthetic set, see shapes.py), or `hf:NAME`.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import datasets
import torch
from torch import Tensor, nn

from pipelines import Key, Scores, SourceSide, Task, UserError
from pipelines.hub import is_hub_spec, load_hub

from . import shapes
from .attention_maps import save_attention_maps
from .cnn import BACKBONES, ImageFrontend
from .images import CACHE, IMAGE_SUFFIXES, BadImage, open_rgb
from .loaders import Record, read_records
from .metrics import caption_scores

SHAPES_PREFIX = "shapes:"


class ImageSource(SourceSide):
    """Image paths -> uint8 tensors (decoded once, cached in memory) -> the CNN front-end's grid."""

    def __init__(self, settings):
        self.data, self.model = settings["data"], settings["model"]
        self.fresh = False

    def fit(self, train: datasets.Dataset, run_dir: Path) -> None:
        self.fresh = True        # a new model: a torchvision backbone starts from the user's weights file

    def load(self, run_dir: Path) -> None:
        self.fresh = False       # the run's checkpoint holds every weight

    def encode(self, sources: Sequence[Any]) -> list[Tensor]:
        try:
            return [CACHE.get(str(s), self.data["image_size"]) for s in sources]
        except BadImage as err:
            raise UserError(str(err)) from None

    def length(self, item: Tensor) -> int:
        return self.model["grid"] ** 2

    def collate(self, items: list[Tensor]) -> tuple[Tensor, Tensor]:
        return torch.stack(items), torch.full((len(items),), self.model["grid"] ** 2, dtype=torch.long)

    def frontend(self, model: dict[str, Any]) -> nn.Module:
        return ImageFrontend(model, self.data["augment"], self.fresh)


class CaptioningTask(Task):
    kind = "one2n"
    primary_metric = "cider"
    data_settings = {
        "image_field": Key("image", str, help="JSONL / CSV / hf: field holding the image path (or image)"),
        "captions_field": Key("captions", str, help="JSONL / hf: field holding the list of captions"),
        "caption_field": Key("caption", str, help="CSV/TSV / hf: column holding one caption per row"),
        "image_dir": Key("", str, help="folder image paths are relative to (default: the caption file's folder)"),
        "image_size": Key(64, int, help="images are resized to a square of this many pixels"),
        "augment": Key(True, bool, help="light augmentation while training (small zoom/shift, brightness, contrast)"),
        "skip_bad_images": Key(False, bool, help="skip (and count) unreadable or missing images and images "
                                                 "without captions instead of stopping with an error"),
        "shapes_train": Key(2000, int, help="shapes:SEED: training scenes"),
        "shapes_eval": Key(300, int, help="shapes:SEED: validation and test scenes (each)"),
    }
    extra_settings = {"model": {
        "cnn": Key("residual", str, ("residual", *BACKBONES),
                   "residual: a compact residual CNN trained from scratch; resnetNN: torchvision, weights from "
                   "model.cnn_weights"),
        "cnn_channels": Key(32, int, help="residual CNN: width of the first stage (then x2, x4)"),
        "cnn_blocks": Key(1, int, help="residual CNN: residual blocks per stage"),
        "cnn_weights": Key("", str, help="torchvision backbone: local weights file (.pth or .safetensors)"),
        "cnn_freeze": Key(True, bool, help="torchvision backbone: keep its weights fixed"),
        "grid": Key(8, int, help="the CNN feature map is pooled to grid x grid cells (the attention's memory); "
                                 "the map is image_size/8 (residual) or image_size/32 (resnet) cells wide"),
    }}

    def __init__(self, settings, data_root: Path):
        super().__init__(settings, data_root)
        self.skipped: Counter[str] = Counter()
        cells, limit = settings["model"]["grid"] ** 2, settings["data"]["max_length"]
        if cells > limit:   # the engine would drop every training pair as too long
            raise UserError(f"model.grid = {settings['model']['grid']} gives {cells} grid cells, more than "
                            f"data.max_length = {limit}; set data.max_length to at least {cells}")

    # -- data ----------------------------------------------------------------------------------
    def load(self, spec: str, split: str) -> datasets.Dataset:
        data = self.settings["data"]
        if spec.startswith(SHAPES_PREFIX):
            records = self._shapes(spec, split)
        elif is_hub_spec(spec):
            records = self._from_table(load_hub(spec, split), spec)
        else:
            path = self.resolve(spec)
            base = self.resolve(data["image_dir"]) if data["image_dir"] else path.parent
            records = read_records(path, base, data)
        records = self._usable(records, spec)
        if split == "train":
            pairs = [(r.image, c) for r in records for c in r.captions]
            return datasets.Dataset.from_dict({"source": [p for p, _ in pairs], "target": [c for _, c in pairs]})
        return datasets.Dataset.from_dict({"source": [r.image for r in records],
                                           "target": [r.captions[0] for r in records],
                                           "references": [r.captions for r in records]})

    def _shapes(self, spec: str, split: str) -> list[Record]:
        body, _, name = spec[len(SHAPES_PREFIX):].partition("@")
        name = name or split
        if not body.strip().isdigit() or name not in shapes.SPLITS:
            raise UserError(f"{spec}: expected shapes:SEED or shapes:SEED@SPLIT with SEED a number and SPLIT one "
                            f"of {', '.join(shapes.SPLITS)} (e.g. --data test=shapes:1@test)")
        data = self.settings["data"]
        folder = shapes.ensure(int(body), data["shapes_train"], data["shapes_eval"])
        return read_records(folder / f"{name}.jsonl", folder, {**data, "image_field": "image",
                                                               "captions_field": "captions"})

    def _from_table(self, table: datasets.Dataset, spec: str) -> list[Record]:
        """Rows of a Hugging Face dataset: an image column (Image feature or path) and captions."""
        data = self.settings["data"]
        if data["image_field"] not in table.column_names:
            raise UserError(f"{spec}: no column {data['image_field']!r} (columns: {', '.join(table.column_names)}); "
                            f"set data.image_field")
        caption_column = next((c for c in (data["captions_field"], data["caption_field"]) if c in table.column_names),
                              None)
        if caption_column is None:
            raise UserError(f"{spec}: no column {data['captions_field']!r} or {data['caption_field']!r} (columns: "
                            f"{', '.join(table.column_names)}); set data.captions_field or data.caption_field")
        records = []
        for i, row in enumerate(table):
            where, image, captions = f"{spec} row {i}", row[data["image_field"]], row[caption_column]
            captions = [captions] if isinstance(captions, str) else list(captions or [])
            if isinstance(image, dict) and not image.get("bytes") and image.get("path"):
                image = image["path"]          # an undecoded Image feature pointing to a local file
            key = image if isinstance(image, str) else f"{spec}#{i}"
            if not isinstance(image, str):
                try:
                    CACHE.put(key, data["image_size"], image)
                except BadImage as err:
                    raise UserError(f"{where}: {err}") from None
            records.append(Record(key, [" ".join(c.split()) for c in captions if c.strip()], where))
        return records

    def _usable(self, records: list[Record], spec: str) -> list[Record]:
        """Records with captions and a readable image; the others are errors, or skipped and counted."""
        data, kept, problems = self.settings["data"], [], Counter()
        first = ""
        for record in records:
            problem, reason = "", ""
            if not record.captions:
                problem, reason = f"image {record.image} has no captions", "without captions"
            else:
                try:
                    CACHE.get(record.image, data["image_size"])
                except BadImage as err:
                    missing = not Path(record.image).exists()
                    problem = str(err) + ("; image paths are relative to the caption file's folder, or to "
                                          "data.image_dir" if missing else "")
                    reason = "missing" if missing else "unreadable"
            if not problem:
                kept.append(record)
            elif data["skip_bad_images"]:
                problems[reason] += 1
                first = first or f"{record.where}: {problem}"
            else:
                raise UserError(f"{record.where}: {problem}; fix or remove it, or set data.skip_bad_images = true "
                                f"to skip such images")
        if problems:
            self.skipped.update(problems)
            counts = ", ".join(f"{n} {reason}" for reason, n in sorted(problems.items()))
            print(f"warning: {spec}: skipped {sum(problems.values())} images ({counts}); first: {first}",
                  file=sys.stderr)
        if not kept:
            raise UserError(f"{spec}: no usable images with captions")
        return kept

    # -- model and metrics -------------------------------------------------------------------
    def source_side(self) -> SourceSide:
        return ImageSource(self.settings)

    def score(self, hypotheses: list[str], references: list[list[str]]) -> Scores:
        return caption_scores(hypotheses, references)

    # -- prediction --------------------------------------------------------------------------
    def parse_inputs(self, inputs: Sequence[str]) -> list[Any]:
        """Image files, or folders of images (taken in name order)."""
        paths: list[str] = []
        for item in inputs:
            path = Path(item).expanduser()
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if not found:
                    raise UserError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
                paths.extend(str(p) for p in found)
            elif path.is_file():
                paths.append(str(path))
            else:
                raise UserError(f"{item}: no such image file or folder")
        return paths

    def save_attention(self, source: Any, words: list[str], attention: Tensor, folder: Path, index: int) -> list[Path]:
        """Attention over the image for each generated word: an overview PNG and one PNG per word."""
        path = Path(str(source))
        try:
            image = open_rgb(path)
        except BadImage as err:
            raise UserError(str(err)) from None
        return save_attention_maps(image, words, attention, folder, f"{index:03d}_{path.stem}")
