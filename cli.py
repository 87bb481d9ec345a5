"""The `s2s` command line: parses options, calls `pipelines`, prints. Errors print one line and exit 2."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pipelines.errors import UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """s2s: recurrent encoder-decoder pipelines for many sequence tasks.

    Named pipelines live in registry.toml; data paths are read under the data
    root (S2S_DATA_DIR, default ./data).
    """


@cli.command("list")
def list_command() -> None:
    """Registered tasks (with their plugin package) and named pipelines."""
    from pipelines.registry import discover_tasks, load_pipelines
    tasks = discover_tasks()
    click.echo("tasks:")
    for name, entry in sorted(tasks.items()):
        status = f"BROKEN: {entry.error}" if entry.error else f"{entry.cls.kind}, metric {entry.cls.primary_metric}"
        click.echo(f"  {name:<16} {entry.package} {entry.version}  ({status})")
    click.echo("pipelines:")
    for name, pipe in sorted(load_pipelines(tasks).items()):
        click.echo(f"  {name:<24} {pipe.raw['task']:<14} {pipe.raw.get('description', '')}")


@cli.command()
@click.argument("name")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a setting, e.g. train.max_steps=100")
def info(name: str, overrides: tuple[str, ...]) -> None:
    """The resolved settings of pipeline NAME (TOML)."""
    from pipelines.runs import to_toml
    from pipelines.workflows import resolve_pipeline
    click.echo(to_toml(resolve_pipeline(name, overrides).to_dict()), nl=False)


@cli.command()
@click.argument("name", required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a setting, e.g. train.max_steps=100")
@click.option("--out", type=click.Path(path_type=Path), help="run folder (default runs/NAME/<timestamp>)")
@click.option("--max-minutes", type=float, default=0.0, help="training time budget (overrides train.max_minutes)")
@click.option("--resume", type=click.Path(path_type=Path), help="continue the run in this folder exactly where it stopped")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="data-parallel processes on this machine (one per GPU, or per CPU core); see also torchrun")
def train(name: str | None, overrides: tuple[str, ...], out: Path | None, max_minutes: float,
          resume: Path | None, quiet: bool, nproc: int) -> None:
    """Train pipeline NAME (or --resume RUN), with validation and checkpoints."""
    from pipelines import workflows
    from pipelines.distributed import launched_rank
    if not name and resume is None:
        raise UserError("give a pipeline NAME to train, or --resume RUN (see `s2s list`)")
    if nproc != 1:
        folder = workflows.train_parallel(nproc, name or "", overrides, out, resume, max_minutes, not quiet)
    else:
        folder = workflows.train(name or "", overrides, out, resume, max_minutes, show_progress=not quiet,
                                 log=click.echo)[0].folder
    if launched_rank() == 0:   # under torchrun every process gets here
        click.echo(f"next: s2s evaluate {folder}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", help="score on other files: split=PATH[,PATH] (e.g. test=test.de,test.en)")
@click.option("--beam", type=int, help="beam size (1 = greedy; default search.beam)")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--set", "search", multiple=True, metavar="search.KEY=VALUE",
              help="a search setting for this evaluation, e.g. search.length_penalty=0.6")
@click.option("--json", "as_json", is_flag=True, help="print the metrics as one JSON object")
def evaluate(run: Path, data: str | None, beam: int | None, checkpoint: str, search: tuple[str, ...],
             as_json: bool) -> None:
    """Score RUN on its test split (or --data) and print the metrics."""
    from pipelines import workflows
    loaded, split, result, predictions = workflows.evaluate(run, data, beam, checkpoint, search)
    if as_json:
        click.echo(json.dumps(result))
        return
    metrics = ", ".join(f"{k} {result[k]:.2f}" for k in result if isinstance(result[k], float))
    search = "" if loaded.target.kind == "label" else f", beam {result['beam']}"   # a classifier has no search
    click.echo(f"{result['pipeline']} on {split} ({result['examples']} examples{search}): {metrics}")
    if result["signature"]:
        click.echo(f"signature: {result['signature']}")
    click.echo(f"predictions: {loaded.folder / 'eval' / (split + '.predictions.txt')}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1)
@click.option("--beam", type=int, help="beam size (1 = greedy)")
@click.option("--n-best", type=int, default=1, show_default=True, help="alternatives to print per input")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per input, with scores or class probabilities")
@click.option("--attention-map", "attention_dir", type=click.Path(path_type=Path),
              help="also save pictures of the attention for each generated token in this folder (greedy search)")
@click.option("--set", "search", multiple=True, metavar="search.KEY=VALUE",
              help="a search setting for these predictions, e.g. search.max_length=50")
def predict(run: Path, inputs: tuple[str, ...], beam: int | None, n_best: int, as_json: bool,
            attention_dir: Path | None, search: tuple[str, ...]) -> None:
    """Predictions of RUN for INPUTS (texts or files; standard input when none are given)."""
    from pipelines import workflows
    items = list(inputs) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    raw, predictions = workflows.predict(run, items, beam, n_best, attention_dir, search)
    for source, p in zip(raw, predictions):
        if as_json:
            click.echo(json.dumps({"input": str(source), "prediction": p.text, "score": p.score,
                                   "alternatives": [{"text": t, "score": s} for t, s in p.alternatives]},
                                  ensure_ascii=False))
        elif n_best > 1:
            for text, score in p.alternatives:
                click.echo(f"{score:.3f}\t{text}")
        else:
            click.echo(p.text if p.tokens is not None else f"{p.text}\t{p.score:.3f}")
    if attention_dir is not None:
        click.echo(f"attention maps: {attention_dir}", err=True)


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(["n2m", "one2n", "n2one"]), default="n2m", show_default=True,
              help="sequence->sequence, one input->sequence, or sequence->label")
@click.option("--frontend", type=click.Choice(["text", "image", "audio"]), default="text", show_default=True,
              help="what the inputs are")
@click.option("--dir", "folder", type=click.Path(path_type=Path), help="where to write it (default ./s2s-NAME)")
@click.option("--force", is_flag=True, help="overwrite the files in a non-empty --dir")
def new_plugin(name: str, kind: str, frontend: str, folder: Path | None, force: bool) -> None:
    """Write a working, tested task plugin package NAME (entry point, task, front-end, metric, data, demo)."""
    from pipelines.scaffold import new_plugin as scaffold
    folder, steps = scaffold(name, kind, frontend, folder, force)
    click.echo(f"wrote plugin package {folder} (task {name}, {kind}, {frontend} input)")
    click.echo("next:")
    for step in steps:
        click.echo(f"  {step}")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("report"), show_default=True,
              help="folder for the page and its plots")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True,
              help="Markdown with PNG files, or one self-contained HTML file")
@click.option("--examples", type=int, default=3, show_default=True, help="attention maps per run (validation examples)")
def report(runs: tuple[Path, ...], out: Path, fmt: str, examples: int) -> None:
    """One page comparing RUNS (of any tasks): metrics table, learning curves, attention maps, scores by length."""
    from pipelines.report import write_report
    page = write_report(list(runs), out, fmt, examples, log=lambda line: click.echo(line, err=True))
    click.echo(f"report: {page}")


@cli.group()
def bench() -> None:
    """Benchmarks that exercise the whole toolkit."""


@bench.command("tasks")
@click.option("--max-minutes", type=float, default=1.0, show_default=True, help="training budget per task")
@click.option("--task", "only", multiple=True, help="only these tasks (default: every registered task)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="a setting for every demo, e.g. train.threads=1")
@click.option("--beam", type=int, default=1, show_default=True, help="beam for the test scores (0: each pipeline's own)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench-tasks"), show_default=True,
              help="folder for the runs and the report")
def bench_tasks(max_minutes: float, only: tuple[str, ...], overrides: tuple[str, ...], beam: int, out: Path) -> None:
    """Train the demo pipeline of every registered task on a small budget and print the cross-task table."""
    from pipelines.report import bench_tasks as run_bench
    table, page = run_bench(out, max_minutes, list(only), list(overrides), beam,
                            log=lambda line: click.echo(line, err=True))
    click.echo(table)
    click.echo(f"report: {page}")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except UserError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(2)
    except click.ClickException as err:
        click.echo(f"error: {err.format_message()}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
