"""External plugins: the s2s-dialogue example works through its own entry point, and broken, duplicate or
incomplete plugins installed beside s2s are reported by the CLI without taking the rest down."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO, assert_user_error, run_cli

EXAMPLE = REPO / "examples" / "s2s-dialogue"


def fake_dist(site: Path, package: str, entry_points: dict[str, str], module: str = "", code: str = "") -> None:
    """A minimal installed distribution: METADATA and entry_points.txt (and a module) in `site`."""
    info = site / f"{package.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n", encoding="utf-8")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[s2s.tasks]\n{lines}", encoding="utf-8")
    if module:
        (site / f"{module}.py").write_text(code, encoding="utf-8")


INCOMPLETE = '''
from pipelines import Task

class HalfTask(Task):
    kind = "n2m"
    def load(self, spec, split):
        return None
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict:
    """PYTHONPATH under which s2s sees the example (unless CI installed it) and, beside it, a plugin whose
    import fails and one missing required parts: everything else must keep working under it."""
    site = tmp_path_factory.mktemp("site")
    try:
        metadata.distribution("s2s-dialogue")
    except metadata.PackageNotFoundError:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                                 "--no-index", "--quiet", "--target", str(site), str(EXAMPLE)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    fake_dist(site, "s2s-broken", {"broken": "broken_plugin:BrokenTask"}, "broken_plugin",
              "import no_such_dependency\n")
    fake_dist(site, "s2s-half", {"half": "half_plugin:HalfTask"}, "half_plugin", INCOMPLETE)
    return {"PYTHONPATH": str(site)}


def test_s2s_itself_never_names_the_example():
    for path in ("pyproject.toml", "registry.toml", "cli.py"):
        assert "dialogue" not in (REPO / path).read_text(encoding="utf-8")
    assert 'dialogue = "s2s_dialogue:DialogueTask"' in (EXAMPLE / "pyproject.toml").read_text(encoding="utf-8")


def test_list_shows_the_example_and_the_broken_plugins_with_reasons(plugin_env):
    listed = run_cli("list", env=plugin_env)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith("  ")}
    assert "s2s-dialogue 0.1.0  (n2m, metric bleu)" in lines["dialogue"]
    assert "dialogue-demo" in lines and "dialogue-cafe" in lines
    assert "s2s-broken 1.0" in lines["broken"] and "BROKEN: import failed" in lines["broken"]
    assert "no_such_dependency" in lines["broken"]
    assert "s2s-half 1.0" in lines["half"] and "BROKEN: missing score, primary_metric" in lines["half"]
    assert "(n2m, metric bleu)" in lines["translation"] and "translate-de-en-demo" in lines


def test_example_trains_and_validates_beside_broken_plugins(plugin_env, tmp_path):
    run = tmp_path / "run"
    trained = run_cli("train", "dialogue-demo", "--out", str(run), "--quiet", "--set", "train.max_steps=3",
                      "--set", "data.max_examples=300", "--set", "model.hidden=32", "--set", "model.embedding=16",
                      env=plugin_env)
    assert trained.returncode == 0, trained.stderr
    assert "dialogue: 300 training examples" in trained.stdout
    validations = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert validations and {"valid_bleu", "valid_chrf", "valid_distinct2"} <= set(validations[-1])


def test_two_packages_claiming_one_task_are_both_named(tmp_path):
    fake_dist(tmp_path, "s2s-echo-one", {"echo": "echo_one:EchoTask"})
    fake_dist(tmp_path, "s2s-echo-two", {"echo": "echo_two:EchoTask"})
    assert_user_error(run_cli("list", env={"PYTHONPATH": str(tmp_path)}),
                      "'echo'", "s2s-echo-one", "s2s-echo-two", "uninstall one")
