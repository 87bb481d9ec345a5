"""`s2s report` and `s2s bench tasks`: the cross-task page (table, curves, attention maps, length buckets)."""
from __future__ import annotations

import os
import re

import pytest
from click.testing import CliRunner

from cli import cli
from conftest import DATA, TINY_TRANSLATION, write_parallel_slice
from pipelines import workflows
from pipelines.errors import UserError
from pipelines.report import bench_tasks, bucket_edges, write_report

QUIET = dict(show_progress=False, log=lambda *args: None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A translation run without attention, one with additive attention (same budget), and a sentiment run."""
    if not DATA.exists():
        pytest.skip(f"shared data not found at {DATA}")
    base = tmp_path_factory.mktemp("report")
    registry = base / "registry.toml"
    registry.write_text(TINY_TRANSLATION.format(data=write_parallel_slice(base / "mt"), steps=6, eval_every=3,
                                                save_every=3, cell="gru", ema=0.0), encoding="utf-8")
    old = os.environ.get("S2S_REGISTRY")
    os.environ["S2S_REGISTRY"] = str(registry)
    try:
        folders = {}
        for attention in ("none", "additive"):
            run, _ = workflows.train("tiny-mt", [f"model.attention={attention}"], base / attention, **QUIET)
            folders[attention] = run.folder
        run, _ = workflows.train("sentiment-demo", ["train.max_steps=2", "data.max_examples=200",
                                                    "model.hidden=16", "model.embedding=16"], base / "sentiment", **QUIET)
        folders["sentiment"] = run.folder
        yield folders
    finally:
        os.environ.pop("S2S_REGISTRY") if old is None else os.environ.__setitem__("S2S_REGISTRY", old)


def test_markdown_report_compares_runs_across_tasks(runs, tmp_path):
    out = tmp_path / "page"
    result = CliRunner().invoke(cli, ["report", str(runs["none"]), str(runs["additive"]), str(runs["sentiment"]),
                                      "--out", str(out), "--examples", "2"])
    assert result.exit_code == 0, result.output
    page = (out / "report.md").read_text()
    runs_section = page.split("## Learning curves")[0]
    table = [l for l in runs_section.splitlines() if l.startswith("| tiny-mt") or l.startswith("| sentiment")]
    assert len(table) == 3
    assert all(re.search(r"\| [\d.]+ M \| [\d.]+ \| \d+ \| [\d,]+ \| [\d,]+ \|$", row) for row in table), table
    assert "bleu " in table[0] and "nrefs:1" in table[0] and "accuracy " in table[2]
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page):
        assert (out / image).stat().st_size > 1000
    assert len(list(out.glob("attention_1_*.png"))) == 2            # the additive run, two examples
    assert not list(out.glob("attention_0_*.png")) and not list(out.glob("attention_2_*.png"))
    assert "## translation: bleu by source length" in page and "## sentiment: accuracy by source length" in page
    buckets = page.split("## translation: bleu by source length")[1].split("##")[0]
    rows = [l for l in buckets.splitlines() if l.startswith("| tiny-mt")]
    assert len(rows) == 2 and rows[0].count("|") == rows[1].count("|") >= 4    # same buckets for both runs


def test_html_report_is_self_contained(runs, tmp_path):
    page = write_report([runs["additive"]], tmp_path, "html", 1, log=lambda line: None)
    text = page.read_text()
    assert page.name == "report.html" and "data:image/png;base64," in text and "<table>" in text
    assert not re.search(r'src="(?!data:)', text) and not list(tmp_path.glob("*.png"))


def test_buckets_split_lengths_evenly():
    edges = bucket_edges([1, 2, 3, 4, 5, 6, 7, 8])
    assert edges == [(1, 2), (3, 4), (5, 6), (7, 8)]
    assert bucket_edges([5, 5, 5]) == [(5, 5)]


def test_report_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="nothing: not a run folder"):
        write_report([tmp_path / "nothing"], tmp_path / "out")
    with pytest.raises(UserError, match="not a registered task"):
        bench_tasks(tmp_path, only=["no-such-task"])


def test_bench_tasks_trains_demos_and_prints_the_table(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "tasks", "--task", "sentiment", "--max-minutes", "0.2",
                                      "--set", "train.max_steps=2", "--set", "data.max_examples=200",
                                      "--set", "train.threads=1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    row = [l for l in result.output.splitlines() if l.startswith("sentiment-demo")]
    assert row and "sentiment" in row[0] and "accuracy" in row[0]
    assert list(tmp_path.glob("*/report.md")) and list(tmp_path.glob("*/sentiment-demo/eval/test.metrics.json"))
