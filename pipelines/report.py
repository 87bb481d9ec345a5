"""`s2s report` and `s2s bench tasks`: one page comparing runs of any tasks.

For each run folder: its test metrics (evaluating it first if it never was), the training log
(time, tokens/s, peak memory), attention heat maps for a few validation examples, and the
primary metric per source-length bucket (the task's own `score` on each bucket's subset, so a
corpus metric stays a corpus metric). Runs of the same task and test data share their length
buckets, so they can be compared bucket by bucket.
"""
from __future__ import annotations

import base64
import html
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from safetensors import safe_open

from . import plots
from .errors import UserError
from .examples import encode_split
from .inference import predict_items
from .registry import discover_tasks, load_pipelines, settings_for
from .runs import Run

Log = Callable[[str], None]
BUCKETS = 4


@dataclass
class Summary:
    """What the report shows about one run."""

    label: str
    run: Run
    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    lengths: list[int] = field(default_factory=list)        # source length of each test example
    hypotheses: list[str] = field(default_factory=list)
    references: list[list[str]] = field(default_factory=list)
    attention: list[tuple[list[str], list[str], Any]] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.run.settings["task"]

    @property
    def primary(self) -> str:
        return self.metrics["primary"]

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.run.model.parameters())

    def training(self) -> dict[str, float | None]:
        """Seconds trained (validation included), updates, tokens/s over the updates alone, peak memory."""
        progress = _progress(self.run.folder) or (self.records[-1] if self.records else {})
        if not progress:
            return {"seconds": None, "steps": None, "tokens_per_s": None, "peak_mb": None}
        updating = progress["elapsed"] - sum(r.get("validation_seconds", 0.0) for r in self.records)
        peaks = [r["peak_memory_mb"] for r in self.records if "peak_memory_mb" in r]
        return {"seconds": progress["elapsed"], "steps": progress["step"],
                "tokens_per_s": progress["target_tokens"] / updating if updating > 0 else None,
                "peak_mb": max(peaks) if peaks else None}


def _progress(folder: Path) -> dict[str, Any]:
    """Where training ended (step, elapsed, target tokens): the `last` checkpoint's metadata, tensors unread."""
    try:
        with safe_open(str(folder / "checkpoints" / "last.safetensors"), framework="pt") as handle:
            return json.loads(handle.metadata()["s2s"])["state"]["progress"]
    except Exception:  # no or an old checkpoint: the metrics log is the fallback
        return {}


def _read_records(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _source_length(raw: Any, encoded: Any, run: Run) -> int:
    """Words for text input (independent of the run's tokenizer), else the source side's length."""
    return len(raw.split()) if isinstance(raw, str) and hasattr(run.source, "vocab") else run.source.length(encoded)


def _test_results(run: Run, log: Log) -> tuple[dict[str, Any], list[str]]:
    """The run's test metrics and predictions, evaluating it now when `s2s evaluate` never did."""
    from .workflows import evaluate
    metrics_path, predictions_path = run.folder / "eval" / "test.metrics.json", run.folder / "eval" / "test.predictions.txt"
    if metrics_path.exists() and predictions_path.exists():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        lines = predictions_path.read_text(encoding="utf-8").split("\n")[:-1]
        if len(lines) == metrics["examples"]:
            return metrics, lines
    log(f"evaluating {run.folder} on its test split (s2s evaluate)")
    _, _, metrics, predictions = evaluate(run.folder)
    return metrics, [p.text for p in predictions]


def _attention(run: Run, count: int) -> list[tuple[list[str], list[str], Any]]:
    """(source tokens, output tokens, a_ij) for the first `count` short validation examples, greedy search."""
    if count <= 0 or run.target.kind == "label" or run.settings["model"]["attention"] == "none":
        return []
    spec = run.settings["data"]["validation"]
    data = run.task.load(spec, "validation")
    data = data.select(range(min(len(data), 200)))
    split, _ = encode_split(data, run.source, run.target, spec)
    chosen = [i for i in range(len(split)) if split.source_lengths[i] <= 30][:count]
    predictions = predict_items(run, [split.sources[i] for i in chosen], beam=1, keep_attention=True,
                                raw_sources=[split.raw_sources[i] for i in chosen])
    maps = []
    for i, p in zip(chosen, predictions):
        if p.attention is None:
            continue
        vocab = getattr(run.source, "vocab", None)
        source = vocab.tokens(split.sources[i]) if vocab is not None else [str(j) for j in range(p.attention.shape[1])]
        output = [t or "<copied>" for t in run.target.vocab.tokens(p.tokens)][: p.attention.shape[0]]  # copy: OOV ids
        maps.append((source, output, p.attention[: len(output), : len(source)].float().numpy()))
    return maps


def summarise(folder: Path, examples: int, log: Log) -> Summary:
    run = Run.open(folder)
    metrics, hypotheses = _test_results(run, log)
    data = run.task.load(metrics["data"], metrics["split"])
    split, _ = encode_split(data, run.source, run.target, metrics["data"])
    lengths = [_source_length(r, e, run) for r, e in zip(split.raw_sources, split.sources)]
    pipeline = run.settings["pipeline"]
    label = pipeline if Path(folder).name == pipeline else f"{pipeline} ({Path(folder).name})"
    return Summary(label, run, metrics, _read_records(run.folder), lengths, hypotheses, split.references,
                   _attention(run, examples))


# -- length buckets -----------------------------------------------------------------------------
def bucket_edges(lengths: Sequence[int], count: int = BUCKETS) -> list[tuple[int, int]]:
    """Up to `count` (low, high) length ranges holding about equal numbers of examples."""
    ordered = sorted(lengths)
    cuts = sorted({ordered[min(len(ordered) - 1, (len(ordered) * k) // count)] for k in range(1, count)})
    edges, low = [], ordered[0]
    for cut in cuts:
        if cut > low:
            edges.append((low, cut - 1))
            low = cut
    edges.append((low, ordered[-1]))
    return edges


def bucket_scores(summary: Summary, edges: list[tuple[int, int]]) -> list[tuple[int, float]]:
    """(examples, primary metric) per bucket, scored by the task on the bucket's subset."""
    out = []
    for low, high in edges:
        index = [i for i, n in enumerate(summary.lengths) if low <= n <= high]
        if not index:
            out.append((0, float("nan")))
            continue
        scores = summary.run.task.score([summary.hypotheses[i] for i in index], [summary.references[i] for i in index])
        out.append((len(index), scores.values[scores.primary]))
    return out


# -- the page -------------------------------------------------------------------------------------
def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def table_rows(summaries: Sequence[Summary]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "task", "pipeline", "primary metric", "other metrics", "signature / normalisation",
              "parameters", "training time (s)", "steps", "tokens/s", "peak memory (MB)"]
    rows = []
    for s in summaries:
        m, t = s.metrics, s.training()
        others = ", ".join(f"{k} {m[k]:.2f}" for k in m if isinstance(m[k], float) and k != s.primary)
        rows.append([s.label, s.task, s.run.settings["pipeline"], f"{s.primary} {m[s.primary]:.2f}", others or "-",
                     m.get("signature") or "-", f"{s.parameters / 1e6:.2f} M", _number(t["seconds"]),
                     "n/a" if t["steps"] is None else str(t["steps"]), _number(t["tokens_per_s"], 0),
                     _number(t["peak_mb"], 0)])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    cell = lambda text: str(text).replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


@dataclass
class Section:
    title: str
    text: str = ""
    table: tuple[list[str], list[list[str]]] | None = None
    images: list[Path] = field(default_factory=list)


def _sections(summaries: list[Summary], folder: Path) -> list[Section]:
    runs = Section("Runs", "Metrics on each run's test split (`s2s evaluate`). Training time includes validation; "
                   "tokens/s counts target tokens over the updates alone; peak memory is the training process's "
                   "peak RSS on CPU, or the peak allocated GPU memory.", table_rows(summaries))
    curves = Section("Learning curves", "Each validation: losses (dashed: training) and the task's primary metric.")
    by_length = []
    groups: dict[tuple[str, str], list[Summary]] = {}
    for s in summaries:
        groups.setdefault((s.task, s.metrics["data"]), []).append(s)
    for n, ((task, data), group) in enumerate(groups.items()):
        primary = group[0].primary
        logged = [(s.label, s.records) for s in group if s.records]
        if logged:
            curves.images.append(plots.learning_curves(task, logged, primary, folder / f"curves_{n}.png"))
        edges = bucket_edges(group[0].lengths)
        names = [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in edges]
        scored = [(s.label, bucket_scores(s, edges)) for s in group]
        header = ["run", *[f"{name} (n={count})" for name, (count, _) in zip(names, scored[0][1])]]
        rows = [[label, *[f"{v:.2f}" for _, v in scores]] for label, scores in scored]
        image = plots.by_length(task, primary, names, [(label, [v for _, v in scores]) for label, scores in scored],
                                folder / f"by_length_{n}.png")
        by_length.append(Section(f"{task}: {primary} by source length",
                                 f"Test examples of `{data}` in buckets of about equal size by source length (words "
                                 f"for text, positions for images and audio), each scored by the task's own metric "
                                 f"on its subset.", (header, rows), [image]))
    maps = Section("Attention", "The a_ij matrix of greedy search on a few validation examples: row i is output "
                   "token i, column j source position j. Runs without attention (or classifiers) have none.")
    for n, s in enumerate(summaries):
        for k, (source, output, weights) in enumerate(s.attention):
            maps.images.append(plots.attention_map(source, output, weights, f"{s.label}, example {k + 1}",
                                                   folder / f"attention_{n}_{k}.png"))
    return [runs, curves, *by_length, maps]


def _markdown(sections: list[Section], title: str) -> str:
    parts = [f"# {title}\n"]
    for s in sections:
        parts.append(f"## {s.title}\n")
        if s.text:
            parts.append(s.text.strip() + "\n")
        if s.table:
            parts.append(markdown_table(*s.table) + "\n")
        parts += [f"![{p.stem}]({p.name})\n" for p in s.images]
    return "\n".join(parts)


def _html(sections: list[Section], title: str) -> str:
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>"]
    for s in sections:
        body.append(f"<h2>{esc(s.title)}</h2>")
        if s.text:
            body += [f"<p>{esc(p.strip())}</p>" for p in s.text.strip().split("\n\n")]
        if s.table:
            header, rows = s.table
            body.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows)
                        + "</table>")
        for p in s.images:
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            body.append(f'<p><img alt="{esc(p.stem)}" src="data:image/png;base64,{data}"></p>')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(runs: Sequence[Path], out: Path, fmt: str = "md", examples: int = 3, log: Log = print) -> Path:
    """Summarise the runs and write `report.md` (with PNGs beside it) or a self-contained `report.html`."""
    if fmt not in ("md", "html"):
        raise UserError(f"--format {fmt!r}: choose md or html")
    if not runs:
        raise UserError("give at least one run folder (the folder `s2s train` printed)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is a file; give a folder for --out")
    return write_page([summarise(Path(r), examples, log) for r in runs], out, fmt)


def write_page(summaries: list[Summary], out: Path, fmt: str = "md") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    sections = _sections(summaries, out)
    title = f"s2s report: {len(summaries)} run{'s' if len(summaries) != 1 else ''}, {time.strftime('%Y-%m-%d %H:%M')}"
    if fmt == "md":
        page = out / "report.md"
        page.write_text(_markdown(sections, title), encoding="utf-8")
        return page
    page = out / "report.html"
    page.write_text(_html(sections, title), encoding="utf-8")
    for section in sections:     # the page holds them now
        for image in section.images:
            image.unlink()
    return page


# -- s2s bench tasks ------------------------------------------------------------------------------
def demo_pipeline(task: str, pipelines: dict) -> str:
    """The task's demo pipeline: `TASK-demo`, else the first pipeline of the task whose name ends in -demo."""
    names = sorted(n for n, p in pipelines.items() if p.raw["task"] == task and n.endswith("-demo"))
    return f"{task}-demo" if f"{task}-demo" in names else (names[0] if names else "")


def _train(name: str, folder: Path, minutes: float, overrides: Sequence[str]) -> str:
    """Train in a child process (its own peak memory, and a crash stays contained); returns an error or ''."""
    command = [sys.executable, "-c", "from cli import main; main()", "train", name, "--out", str(folder), "--quiet",
               *[a for o in overrides for a in ("--set", o)]]
    if minutes > 0:
        command += ["--max-minutes", str(minutes)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return ""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {result.returncode}"


def bench_tasks(out: Path, max_minutes: float = 1.0, only: Sequence[str] = (), overrides: Sequence[str] = (),
                beam: int = 1, log: Log = print) -> tuple[str, Path]:
    """Train and evaluate the demo pipeline of every registered task (or `only` these), within `max_minutes`
    each, scoring with beam `beam` (0: each pipeline's own); returns the cross-task table as text and the
    report page written beside the runs."""
    from .workflows import evaluate
    tasks = discover_tasks()
    unknown = [t for t in only if t not in tasks]
    if unknown:
        raise UserError(f"--task {unknown[0]!r} is not a registered task; registered: {', '.join(sorted(tasks))}")
    pipelines = load_pipelines(tasks)
    folder = Path(out) / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=False)
    done, problems = [], []
    for task in sorted(only or tasks):
        entry = tasks[task]
        if entry.error:
            problems.append([task, "-", f"broken plugin ({entry.package}): {entry.error}"])
            continue
        name = demo_pipeline(task, pipelines)
        if not name:
            problems.append([task, "-", f"no demo pipeline (name one {task}-demo in the plugin's pipelines file)"])
            continue
        try:
            own = settings_for(pipelines[name], tasks, list(overrides))["train"]["max_minutes"]
        except UserError as err:
            problems.append([task, name, str(err)])
            continue
        minutes = max_minutes if own <= 0 or 0 < max_minutes < own else 0.0
        log(f"{task}: training {name} ({minutes or own:g} min at most)")
        started = time.perf_counter()
        error = _train(name, folder / name, minutes, overrides)
        if error:
            problems.append([task, name, error])
            continue
        try:
            evaluate(folder / name, beam=beam or None)
            done.append(summarise(folder / name, 2, log))
        except UserError as err:
            problems.append([task, name, str(err)])
            continue
        log(f"{task}: done in {time.perf_counter() - started:.0f} s")
    header, rows = table_rows(done)
    keep = [0, 1, 3, 4, 6, 7, 9, 10]     # the columns that fit a terminal
    text = text_table([header[i] for i in keep], [[r[i] for i in keep] for r in rows])
    search = "greedy search" if beam == 1 else f"beam {beam}" if beam else "each pipeline's beam"
    text += f"\n(test scores with {search})"
    if problems:
        text += "\n\nnot run:\n" + text_table(["task", "pipeline", "why"], problems)
    page = write_page(done, folder) if done else folder
    return text, page
