"""What the CLI commands do, as plain functions (so tests and scripts call them without a shell)."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Sequence

from .errors import UserError
from .examples import encode_split
from .inference import Prediction, evaluate_split, predict_items
from .registry import discover_tasks, get_pipeline, get_task_class, load_pipelines, settings_for
from .runs import Run, data_root
from .settings import Settings, parse_overrides, resolve, schema_for
from .training import Progress, Trainer


def resolve_pipeline(name: str, overrides: Sequence[str] = ()) -> Settings:
    tasks = discover_tasks()
    return settings_for(get_pipeline(name, load_pipelines(tasks)), tasks, list(overrides))


def _load(task, spec: str, split: str):
    if not spec:
        raise UserError(f"pipeline {task.settings['pipeline']!r} has no data.{split}; set it in registry.toml or with --set data.{split}=PATH")
    return task.load(spec, split)


def train(name: str, overrides: Sequence[str] = (), out: Path | None = None, resume: Path | None = None,
          max_minutes: float = 0.0, show_progress: bool = True, log=print) -> tuple[Run, Progress]:
    """Train a named pipeline into a new run folder, or continue the run in `resume`."""
    if resume is not None:
        config = Path(resume) / "config.toml"
        if not config.exists():
            raise UserError(f"{resume}: not a run folder (no config.toml); pass the folder `s2s train` printed")
        if not (Path(resume) / "checkpoints" / "last.safetensors").exists():
            raise UserError(f"{resume}: no checkpoint to resume from yet; start a new run instead")
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
        name = raw.pop("pipeline")
        cls = get_task_class(raw["task"])
        settings = resolve(raw, schema_for(cls.data_settings, cls.extra_settings), str(config), parse_overrides(overrides))
        settings.table["pipeline"] = name
        folder = Path(resume)
    else:
        settings = resolve_pipeline(name, overrides)
        folder = None
    task = get_task_class(settings["task"])(settings, data_root())
    data = settings["data"]
    train_data = _load(task, data["train"], "train")
    if data["max_examples"]:
        train_data = train_data.select(range(min(data["max_examples"], len(train_data))))
    valid_data = _load(task, data["validation"], "validation")
    if resume is None:
        folder = Run.new_folder(settings, out)
        run = Run.create(settings, folder, train_data)
    else:
        run = Run.open(folder, checkpoint="last")
        run.settings = settings
    train_split, dropped = encode_split(train_data, run.source, run.target, data["train"], data["max_length"])
    valid_split, _ = encode_split(valid_data, run.source, run.target, data["validation"])
    params = sum(p.numel() for p in run.model.parameters())
    log(f"run folder: {folder}")
    skipped = f" ({dropped} longer than data.max_length = {data['max_length']} skipped)" if dropped else ""
    log(f"{settings['task']}: {len(train_split)} training examples{skipped}, {len(valid_split)} validation; "
        f"model {params / 1e6:.2f} M parameters")
    trainer = Trainer(run, train_split, valid_split, show_progress)
    if resume is not None:
        trainer.resume()
        log(f"resuming at step {trainer.progress.step} (epoch {trainer.progress.epoch})")
    progress = trainer.fit(max_minutes)
    log(f"stopped: {progress.stopped}; best validation {task.primary_metric} = {progress.best:.2f} at step {progress.best_step}")
    return run, progress


def parse_data_option(spec: str) -> tuple[str, str]:
    """`--data split=PATH[,PATH]` -> (split, paths)."""
    split, sep, paths = spec.partition("=")
    if not sep or not paths:
        raise UserError(f"--data {spec!r}: expected split=PATH[,PATH], e.g. --data test=test.de,test.en")
    return split.strip(), paths.strip()


def evaluate(run_dir: Path, data: str | None = None, beam: int | None = None, checkpoint: str = "best"
             ) -> tuple[Run, str, dict[str, Any], list[Prediction]]:
    """Score a run on its test split (or on `--data`), writing eval/<split>.metrics.json and predictions."""
    run = Run.open(run_dir, checkpoint)
    split, spec = parse_data_option(data) if data else ("test", run.settings["data"]["test"])
    dataset = _load(run.task, spec, split)
    encoded, _ = encode_split(dataset, run.source, run.target, spec)
    beam = run.settings["search"]["beam"] if beam is None else beam
    scores, predictions = evaluate_split(run, encoded, beam=beam)
    result = {"task": run.settings["task"], "pipeline": run.settings["pipeline"], "split": split, "data": spec,
              "examples": len(encoded), "beam": beam, "primary": scores.primary, **scores.values,
              "signature": scores.signature}
    out = run.folder / "eval"
    out.mkdir(exist_ok=True)
    (out / f"{split}.metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / f"{split}.predictions.txt").write_text("".join(p.text + "\n" for p in predictions), encoding="utf-8")
    return run, split, result, predictions


def predict(run_dir: Path, inputs: Sequence[str], beam: int | None = None, n_best: int = 1,
            attention_dir: Path | None = None) -> tuple[list[Any], list[Prediction]]:
    """Predictions for the inputs; with `attention_dir`, greedy search and the task's attention pictures there."""
    run = Run.open(run_dir)
    raw = run.task.parse_inputs(inputs)
    if not raw:
        raise UserError("no inputs: give them as arguments, files, or on standard input")
    if attention_dir is not None:
        if run.settings["model"]["attention"] == "none" or run.target.kind == "label":
            raise UserError(f"--attention-map: the model of {run.folder} has no attention (model.attention = none); "
                            f"train with model.attention = dot, general or additive")
        if beam not in (None, 1):
            raise UserError("--attention-map draws greedy search's attention; drop --beam or use --beam 1")
        beam = 1
    predictions = predict_items(run, run.source.encode(raw), beam=beam, n_best=n_best, raw_sources=raw,
                                keep_attention=attention_dir is not None)
    if attention_dir is not None:
        Path(attention_dir).mkdir(parents=True, exist_ok=True)
        for index, (source, p) in enumerate(zip(raw, predictions), start=1):
            run.task.save_attention(source, run.target.vocab.tokens(p.tokens), p.attention, Path(attention_dir), index)
    return raw, predictions
