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
def train(name: str | None, overrides: tuple[str, ...], out: Path | None, max_minutes: float,
          resume: Path | None, quiet: bool) -> None:
    """Train pipeline NAME (or --resume RUN), with validation and checkpoints."""
    from pipelines import workflows
    if not name and resume is None:
        raise UserError("give a pipeline NAME to train, or --resume RUN (see `s2s list`)")
    run, _ = workflows.train(name or "", overrides, out, resume, max_minutes, show_progress=not quiet, log=click.echo)
    click.echo(f"next: s2s evaluate {run.folder}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", help="score on other files: split=PATH[,PATH] (e.g. test=test.de,test.en)")
@click.option("--beam", type=int, help="beam size (1 = greedy; default search.beam)")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the metrics as one JSON object")
def evaluate(run: Path, data: str | None, beam: int | None, checkpoint: str, as_json: bool) -> None:
    """Score RUN on its test split (or --data) and print the metrics."""
    from pipelines import workflows
    loaded, split, result, predictions = workflows.evaluate(run, data, beam, checkpoint)
    if as_json:
        click.echo(json.dumps(result))
        return
    metrics = ", ".join(f"{k} {result[k]:.2f}" for k in result if isinstance(result[k], float))
    click.echo(f"{result['pipeline']} on {split} ({result['examples']} examples, beam {result['beam']}): {metrics}")
    if result["signature"]:
        click.echo(f"signature: {result['signature']}")
    click.echo(f"predictions: {loaded.folder / 'eval' / (split + '.predictions.txt')}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1)
@click.option("--beam", type=int, help="beam size (1 = greedy)")
@click.option("--n-best", type=int, default=1, show_default=True, help="alternatives to print per input")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per input, with scores or class probabilities")
def predict(run: Path, inputs: tuple[str, ...], beam: int | None, n_best: int, as_json: bool) -> None:
    """Predictions of RUN for INPUTS (texts or files; standard input when none are given)."""
    from pipelines import workflows
    items = list(inputs) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    raw, predictions = workflows.predict(run, items, beam, n_best)
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
