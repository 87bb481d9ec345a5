"""Finding task plugins (entry points only) and named pipelines (registry TOML files).

Tasks come from the `s2s.tasks` entry-point group of every installed package, so a
built-in plugin and a third-party one are found the same way. Pipelines come from
the project's `registry.toml`, from files named in S2S_REGISTRY (colon-separated),
and from TOML files that installed plugins ship (`Task.pipelines_file`).
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import UserError
from .settings import Settings, nearest, parse_overrides, resolve, schema_for
from .task import KINDS, Task

GROUP = "s2s.tasks"
REQUIRED = ("load", "score")


@dataclass
class TaskEntry:
    name: str
    package: str
    version: str
    target: str                    # "module:Class"
    cls: type[Task] | None = None
    error: str = ""                # why the plugin could not be used, if it is broken


def _check_plugin(cls: Any) -> str:
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        return "is not a subclass of pipelines.task.Task"
    missing = [m for m in REQUIRED if getattr(cls, m) is getattr(Task, m)]
    if not cls.primary_metric:
        missing.append("primary_metric")
    if cls.kind not in KINDS:
        return f"kind {cls.kind!r} is not one of {', '.join(KINDS)}"
    return f"missing {', '.join(missing)}" if missing else ""


def discover_tasks() -> dict[str, TaskEntry]:
    """Every task declared by an installed package; broken ones are kept with their error."""
    found: dict[str, TaskEntry] = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        package = dist.metadata["Name"] if dist else "?"
        version = dist.version if dist else "?"
        if ep.name in found and found[ep.name].package != package:
            raise UserError(f"task {ep.name!r} is registered by two packages, {found[ep.name].package} and {package}; "
                            f"uninstall one of them (pip uninstall ...)")
        entry = TaskEntry(ep.name, package, version, ep.value)
        try:
            cls = ep.load()
        except Exception as err:  # a broken plugin must not take the others down
            entry.error = f"import failed: {type(err).__name__}: {err}"
        else:
            entry.error = _check_plugin(cls)
            if not entry.error:
                entry.cls = cls
        found[ep.name] = entry
    return found


def get_task_class(name: str, tasks: dict[str, TaskEntry] | None = None) -> type[Task]:
    tasks = discover_tasks() if tasks is None else tasks
    if name not in tasks:
        raise UserError(f"unknown task {name!r}{nearest(name, tasks)}; installed tasks: {', '.join(sorted(tasks)) or 'none'}")
    entry = tasks[name]
    if entry.error:
        raise UserError(f"task {name!r} from {entry.package} is broken: {entry.error}")
    entry.cls.name = name
    return entry.cls


def registry_files(tasks: dict[str, TaskEntry]) -> list[Path]:
    files = [Path(__file__).resolve().parent.parent / "registry.toml"]
    files += [Path(p) for p in os.environ.get("S2S_REGISTRY", "").split(os.pathsep) if p]
    for entry in tasks.values():
        if entry.cls is not None and entry.cls.pipelines_file:
            import importlib
            module = importlib.import_module(entry.cls.__module__)
            files.append(Path(module.__file__).parent / entry.cls.pipelines_file)
    return files


@dataclass
class Pipeline:
    name: str
    source: Path
    raw: dict[str, Any]


def load_pipelines(tasks: dict[str, TaskEntry] | None = None) -> dict[str, Pipeline]:
    """All named pipelines, each checked against its task's settings schema."""
    tasks = discover_tasks() if tasks is None else tasks
    pipelines: dict[str, Pipeline] = {}
    for path in registry_files(tasks):
        if not path.exists():
            continue
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not valid TOML ({err}); fix the file") from None
        for name, raw in table.items():
            where = f"{path} [{name}]"
            if not isinstance(raw, dict) or "task" not in raw:
                raise UserError(f"{where}: a pipeline needs `task = \"...\"` and its settings tables")
            if name in pipelines:
                raise UserError(f"{where}: pipeline {name!r} is also defined in {pipelines[name].source}; rename one")
            if not (raw["task"] in tasks and tasks[raw["task"]].error):   # a broken plugin's pipelines wait
                settings_for(Pipeline(name, path, raw), tasks)   # validate now
            pipelines[name] = Pipeline(name, path, raw)
    return pipelines


def settings_for(pipeline: Pipeline, tasks: dict[str, TaskEntry], overrides: list[str] = ()) -> Settings:
    where = f"{pipeline.source} [{pipeline.name}]"
    try:
        cls = get_task_class(pipeline.raw["task"], tasks)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    schema = schema_for(cls.data_settings, cls.extra_settings)
    settings = resolve(pipeline.raw, schema, where, parse_overrides(overrides))
    settings.table["pipeline"] = pipeline.name
    return settings


def get_pipeline(name: str, pipelines: dict[str, Pipeline]) -> Pipeline:
    if name not in pipelines:
        raise UserError(f"unknown pipeline {name!r}{nearest(name, pipelines)}; "
                        f"known pipelines: {', '.join(sorted(pipelines))} (see `s2s list`)")
    return pipelines[name]
