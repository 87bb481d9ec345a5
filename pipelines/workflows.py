"""What the CLI commands do, as plain functions (so tests and scripts call them without a shell)."""
from __future__ import annotations

import json
import sys
import time
import tomllib
import traceback
from pathlib import Path
from typing import Any, Sequence

import torch

from . import distributed
from .checkpoint import read_checkpoint
from .errors import UserError
from .examples import encode_split
from .hardware import pick_device
from .inference import Prediction, evaluate_split, predict_items
from .registry import discover_tasks, get_pipeline, get_task_class, load_pipelines, settings_for
from .runs import Run, data_root
from .settings import Settings, override_search, parse_overrides, resolve, schema_for
from .training import Progress, Trainer


def resolve_pipeline(name: str, overrides: Sequence[str] = ()) -> Settings:
    tasks = discover_tasks()
    return settings_for(get_pipeline(name, load_pipelines(tasks)), tasks, list(overrides))


def _load(task, spec: str, split: str):
    if not spec:
        raise UserError(f"pipeline {task.settings['pipeline']!r} has no data.{split}; set it in registry.toml or with --set data.{split}=PATH")
    return task.load(spec, split)


def _settings(name: str, overrides: Sequence[str], resume: Path | None) -> Settings:
    """The pipeline's settings, or a run folder's own (with `overrides`) when resuming it."""
    if resume is None:
        return resolve_pipeline(name, overrides)
    config = Path(resume) / "config.toml"
    if not config.exists():
        raise UserError(f"{resume}: not a run folder (no config.toml); pass the folder `s2s train` printed")
    if not (Path(resume) / "checkpoints" / "last.safetensors").exists():
        raise UserError(f"{resume}: no checkpoint to resume from yet; start a new run instead")
    raw = tomllib.loads(config.read_text(encoding="utf-8"))
    pipeline = raw.pop("pipeline")
    cls = get_task_class(raw["task"])
    settings = resolve(raw, schema_for(cls.data_settings, cls.extra_settings), str(config), parse_overrides(overrides))
    settings.table["pipeline"] = pipeline
    return settings


def train(name: str, overrides: Sequence[str] = (), out: Path | None = None, resume: Path | None = None,
          max_minutes: float = 0.0, show_progress: bool = True, log=print) -> tuple[Run, Progress]:
    """Train a named pipeline into a new run folder, or continue the run in `resume`.

    Started by torchrun (or `train_parallel`), each process runs this: rank 0 makes the run
    folder, the others open it, and the Trainer splits every update between them.
    """
    settings = _settings(name, overrides, resume)
    pick_device(settings["train"]["device"])   # a missing GPU is an error before the run folder exists
    world = distributed.setup(settings["train"]["device"], settings["train"]["dist_timeout"])
    if not world.main:
        log, show_progress = (lambda *args: None), False
    try:
        return _train(settings, world, out, resume, max_minutes, show_progress, log)
    finally:
        distributed.teardown(world)


def _train(settings: Settings, world: distributed.World, out: Path | None, resume: Path | None,
           max_minutes: float, show_progress: bool, log) -> tuple[Run, Progress]:
    task = get_task_class(settings["task"])(settings, data_root())
    data = settings["data"]
    train_data = _load(task, data["train"], "train")
    if data["max_examples"]:
        train_data = train_data.select(range(min(data["max_examples"], len(train_data))))
    valid_data = _load(task, data["validation"], "validation")
    if resume is not None:
        folder = Path(resume)
        run = Run.open(folder, checkpoint="last")
        run.settings = settings
    else:
        folder = Run.new_folder(settings, out) if world.main else None
        run = Run.create(settings, folder, train_data) if world.main else None
        folder = Path(distributed.broadcast(str(folder), world))
        if not world.main:   # rank 0 has written the tokenizers and config; the same seed gives the same model
            run = Run.open(folder, checkpoint=None)
            torch.manual_seed(settings["train"]["seed"] * 1000 + world.rank)
    run.place(world.local_rank)
    train_split, dropped = encode_split(train_data, run.source, run.target, data["train"], data["max_length"])
    valid_split, _ = encode_split(valid_data, run.source, run.target, data["validation"])
    params = sum(p.numel() for p in run.model.parameters())
    log(f"run folder: {folder}")
    skipped = f" ({dropped} longer than data.max_length = {data['max_length']} skipped)" if dropped else ""
    processes = f", {world.size} processes" if world.active else ""
    log(f"{settings['task']}: {len(train_split)} training examples{skipped}, {len(valid_split)} validation; "
        f"model {params / 1e6:.2f} M parameters; {run.device}, {run.precision}{processes}")
    trainer = Trainer(run, train_split, valid_split, show_progress, world)
    if resume is not None:
        trainer.resume()
        log(f"resuming at step {trainer.progress.step} (epoch {trainer.progress.epoch})")
    progress = trainer.fit(max_minutes)
    task_metric = run.task.primary_metric
    log(f"stopped: {progress.stopped}; best validation {task_metric} = {progress.best:.2f} at step {progress.best_step}")
    return run, progress


def train_parallel(nproc: int, name: str, overrides: Sequence[str] = (), out: Path | None = None,
                   resume: Path | None = None, max_minutes: float = 0.0, show_progress: bool = True) -> Path:
    """`s2s train --nproc N`: N data-parallel processes on this machine (one per GPU, or per CPU core).
    Returns the run folder."""
    settings = _settings(name, overrides, resume)
    distributed.check_nproc(nproc, settings["train"]["device"])
    folder = Path(resume) if resume is not None else (
        out or Path("runs") / settings["pipeline"] / time.strftime("%Y%m%d-%H%M%S"))
    try:
        distributed.launch(nproc, _worker, name, tuple(overrides), folder if resume is None else None, resume,
                           max_minutes, show_progress)
    except UserError as err:
        last = folder / "checkpoints" / "last.safetensors"
        if not last.exists():
            raise UserError(f"{err}; no checkpoint was written yet, so start the run again") from None
        step = read_checkpoint(last)[1]["state"]["progress"]["step"]
        raise UserError(f"{err}; the checkpoint of step {step} is intact: resume with "
                        f"`s2s train --resume {folder} --nproc {nproc}`") from None
    return folder


def _worker(name: str, overrides: Sequence[str], out: Path | None, resume: Path | None, max_minutes: float,
            show_progress: bool) -> None:
    """One process of `train_parallel`: errors print one line (with the rank) and exit 2."""
    try:
        train(name, overrides, out, resume, max_minutes, show_progress)
    except UserError as err:   # the same on every rank, so rank 0 says it
        if distributed.launched_rank() == 0:
            print(f"error (process 0): {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception as err:
        if not distributed.lost_peers(err):   # a bug, not bad input: the launcher would swallow the traceback
            traceback.print_exc()
            sys.exit(1)
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        print(f"(process {distributed.launched_rank()} lost the other processes: {reason})", file=sys.stderr, flush=True)
        sys.exit(3)


def parse_data_option(spec: str) -> tuple[str, str]:
    """`--data split=PATH[,PATH]` -> (split, paths)."""
    split, sep, paths = spec.partition("=")
    if not sep or not paths:
        raise UserError(f"--data {spec!r}: expected split=PATH[,PATH], e.g. --data test=test.de,test.en")
    return split.strip(), paths.strip()


def evaluate(run_dir: Path, data: str | None = None, beam: int | None = None, checkpoint: str = "best",
             search: Sequence[str] = ()) -> tuple[Run, str, dict[str, Any], list[Prediction]]:
    """Score a run on its test split (or on `--data`), writing eval/<split>.metrics.json and predictions.
    `search`: `search.KEY=VALUE` overrides (length penalty, max length, ...) for this evaluation only."""
    run = Run.open(run_dir, checkpoint)
    override_search(run.settings, search)
    split, spec = parse_data_option(data) if data else ("test", run.settings["data"]["test"])
    dataset = _load(run.task, spec, split)
    encoded, _ = encode_split(dataset, run.source, run.target, spec)
    beam = run.settings["search"]["beam"] if beam is None else beam
    scores, predictions = evaluate_split(run, encoded, beam=beam)
    result = {"task": run.settings["task"], "pipeline": run.settings["pipeline"], "split": split, "data": spec,
              "examples": len(encoded), "beam": beam, "primary": scores.primary, **scores.values,
              "signature": scores.signature}
    if run.target.kind != "label":   # a classifier has no search
        result["search"] = dict(run.settings["search"], beam=beam)
    out = run.folder / "eval"
    out.mkdir(exist_ok=True)
    (out / f"{split}.metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / f"{split}.predictions.txt").write_text("".join(p.text + "\n" for p in predictions), encoding="utf-8")
    return run, split, result, predictions


def predict(run_dir: Path, inputs: Sequence[str], beam: int | None = None, n_best: int = 1,
            attention_dir: Path | None = None, search: Sequence[str] = ()) -> tuple[list[Any], list[Prediction]]:
    """Predictions for the inputs; with `attention_dir`, greedy search and the task's attention pictures there."""
    run = Run.open(run_dir)
    override_search(run.settings, search)
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
