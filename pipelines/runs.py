"""A run folder and everything loaded from it: settings, task, the two sides, the model.

Layout: config.toml (resolved settings), tokenizer or label files, checkpoints/last
and checkpoints/best (.safetensors), metrics.jsonl (one line per validation),
eval/<split>.metrics.json and eval/<split>.predictions.txt.
"""
from __future__ import annotations

import os
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_weights, read_checkpoint
from .errors import UserError
from .hardware import pick_device, pick_precision
from .model import Classifier, Seq2Seq, init_uniform
from .registry import TaskEntry, get_task_class
from .settings import Settings, resolve, schema_for
from .task import SourceSide, TargetSide, Task


def data_root() -> Path:
    return Path(os.environ.get("S2S_DATA_DIR", "data")).expanduser()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_toml(table: dict[str, Any]) -> str:
    """Settings tables (scalars and one level of sections) as TOML text."""
    top = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict) and v is not None]
    sections = [f"\n[{k}]\n" + "\n".join(f"{n} = {_toml_value(x)}" for n, x in v.items())
                for k, v in table.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(sections) + "\n"


def build_model(task: Task, source: SourceSide, target: TargetSide, settings: Settings) -> torch.nn.Module:
    model = settings["model"]
    frontend = source.frontend(model)
    if target.kind == "label":
        if model["ensemble"] < 1:
            raise UserError(f"model.ensemble = {model['ensemble']}: must be 1 or more (independent members)")
        more = [source.frontend(model) for _ in range(model["ensemble"] - 1)]
        net = Classifier(frontend, model, target.size, lm=settings["train"]["lm_weight"] > 0, more_frontends=more)
    else:
        if model["ensemble"] != 1 or settings["train"]["lm_weight"] > 0:
            raise UserError("model.ensemble and train.lm_weight are for N->1 (label) tasks; set them to 1 and 0")
        net = Seq2Seq(frontend, model, target.size, ctc=settings["train"]["ctc_weight"] > 0)
    if model["param_init"] > 0:
        init_uniform(net, model["param_init"])
    return net


@dataclass
class Run:
    folder: Path
    settings: Settings
    task: Task
    source: SourceSide
    target: TargetSide
    model: torch.nn.Module
    precision: str = "fp32"   # autocast precision for training and decoding (see hardware.py)

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def place(self, local_rank: int = 0) -> None:
        """Move the model to the device of `train.device` (GPU `local_rank` on a multi-GPU node) and pick
        the precision of `train.precision` for it."""
        device = pick_device(self.settings["train"]["device"], local_rank)
        self.model.to(device)
        self.precision = pick_precision(self.settings["train"]["precision"], device)

    @staticmethod
    def new_folder(settings: Settings, out: Path | None) -> Path:
        if out is None:
            out = Path("runs") / settings["pipeline"] / time.strftime("%Y%m%d-%H%M%S")
        if out.exists() and any(out.iterdir()):
            raise UserError(f"{out}: run folder already exists and is not empty; pick another --out or --resume it")
        out.mkdir(parents=True, exist_ok=True)
        return out

    @classmethod
    def create(cls, settings: Settings, folder: Path, train_data, tasks: dict[str, TaskEntry] | None = None) -> "Run":
        """Fit the sides on the training data, save the config, build a fresh model."""
        task = get_task_class(settings["task"], tasks)(settings, data_root())
        source, target = task.source_side(), task.target_side()
        source.fit(train_data, folder)
        target.fit(train_data, folder)
        (folder / "config.toml").write_text(to_toml(settings.to_dict()), encoding="utf-8")
        torch.manual_seed(settings["train"]["seed"])
        return cls(folder, settings, task, source, target, build_model(task, source, target, settings))

    @classmethod
    def open(cls, folder: Path, checkpoint: str | None = "best", tasks: dict[str, TaskEntry] | None = None) -> "Run":
        """Everything `evaluate`, `predict` and `report` need, from the folder alone. `checkpoint=None`:
        the fresh model `create` built (same seed), for the other processes of a data-parallel run."""
        folder = Path(folder)
        config = folder / "config.toml"
        if not config.exists():
            raise UserError(f"{folder}: not a run folder (no config.toml); pass the folder `s2s train` printed")
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
        pipeline = raw.pop("pipeline", folder.name)
        cls_ = get_task_class(raw["task"], tasks)
        settings = resolve(raw, schema_for(cls_.data_settings, cls_.extra_settings), str(config))
        settings.table["pipeline"] = pipeline
        task = cls_(settings, data_root())
        source, target = task.source_side(), task.target_side()
        source.load(folder)
        target.load(folder)
        torch.manual_seed(settings["train"]["seed"])
        model = build_model(task, source, target, settings)
        if checkpoint is not None:
            path = folder / "checkpoints" / f"{checkpoint}.safetensors"
            if not path.exists() and checkpoint == "best":
                path = folder / "checkpoints" / "last.safetensors"
            tensors, _ = read_checkpoint(path)
            load_weights(model, tensors)
            model.eval()
        run = cls(folder, settings, task, source, target, model)
        run.place()
        return run
