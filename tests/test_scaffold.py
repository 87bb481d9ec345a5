"""`s2s new-plugin`: a generated package installs, is listed, passes its own tests, trains and evaluates;
every kind x front-end combination trains; bad names and occupied folders are refused."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from conftest import assert_user_error, run_cli
from pipelines.errors import UserError
from pipelines.registry import TaskEntry
from pipelines.runs import Run, data_root
from pipelines.scaffold import new_plugin
from pipelines.settings import resolve, schema_for
from pipelines.examples import encode_split
from pipelines.inference import evaluate_split
from pipelines.training import Trainer


def pip_install_target(package: Path, target: Path) -> None:
    """Install into a folder (put on PYTHONPATH later), leaving the environment untouched."""
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                             "--no-index", "--quiet", "--target", str(target), str(package)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_generated_plugin_installs_lists_tests_trains_and_evaluates(tmp_path):
    made = CliRunner().invoke(cli, ["new-plugin", "word-flip", "--dir", str(tmp_path / "pkg")])
    assert made.exit_code == 0, made.output
    assert "pip install" in made.output and "s2s train word-flip-demo" in made.output
    pip_install_target(tmp_path / "pkg", tmp_path / "site")
    env = {"PYTHONPATH": str(tmp_path / "site")}

    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "word-flip        s2s-word-flip 0.1.0  (n2m, metric bleu)" in listed.stdout
    assert "word-flip-demo" in listed.stdout and "translation      s2s" in listed.stdout

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                           cwd=tmp_path / "pkg", capture_output=True, text=True, timeout=300,
                           env={**os.environ, **env, "OMP_NUM_THREADS": "1"})
    assert tests.returncode == 0 and "4 passed" in tests.stdout, tests.stdout + tests.stderr

    run = tmp_path / "run"
    trained = run_cli("train", "word-flip-demo", "--out", str(run), "--quiet", "--set", "train.max_steps=4", env=env)
    assert trained.returncode == 0, trained.stderr
    evaluated = run_cli("evaluate", str(run), "--json", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert '"primary": "bleu"' in evaluated.stdout and '"examples": 40' in evaluated.stdout


def _load_generated(folder: Path, module: str):
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(folder))


@pytest.mark.parametrize("frontend", ["text", "image", "audio"])
@pytest.mark.parametrize("kind", ["n2m", "one2n", "n2one"])
def test_every_kind_and_frontend_trains_and_scores(tmp_path, kind, frontend):
    """The generated loader, front-end and metric work together: two updates, then scoring the test split."""
    name = f"gen-{kind}-{frontend}"
    folder, _ = new_plugin(name, kind, frontend, tmp_path / "pkg")
    module = "s2s_" + name.replace("-", "_")
    cls = _load_generated(folder, module).__dict__[f"Gen{kind.capitalize()}{frontend.capitalize()}Task"]
    cls.name = name
    tasks = {name: TaskEntry(name, "s2s-" + name, "0.1.0", f"{module}:{cls.__name__}", cls)}
    raw = tomllib.loads((folder / module / "pipelines.toml").read_text())[f"{name}-demo"]
    settings = resolve(raw, schema_for(cls.data_settings, cls.extra_settings), "generated",
                       [("train.max_steps", "2"), ("train.threads", "1")])
    settings.table["pipeline"] = f"{name}-demo"
    task = cls(settings, data_root())
    train = task.load("fixture:train", "train")
    run = Run.create(settings, Run.new_folder(settings, tmp_path / "run"), train, tasks)
    train_split, _ = encode_split(train, run.source, run.target, "train")
    valid_split, _ = encode_split(task.load("fixture:validation", "validation"), run.source, run.target, "validation")
    progress = Trainer(run, train_split, valid_split, show_progress=False).fit()
    assert progress.step == 2
    scores, predictions = evaluate_split(run, valid_split, beam=1)
    assert scores.primary == cls.primary_metric and len(predictions) == len(valid_split)
    perfect = task.score([r[0] for r in valid_split.references], valid_split.references)
    assert perfect.values[scores.primary] == pytest.approx(0.0 if cls.primary_metric == "wer" else 100.0)
    for module_name in [m for m in sys.modules if m.startswith(module)]:
        del sys.modules[module_name]


def test_invalid_name_is_refused_on_the_command_line(tmp_path):
    assert_user_error(run_cli("new-plugin", "Bad.Name", cwd=tmp_path), "Bad.Name", "not valid", "lowercase")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name,kind,frontend,needles", [
    ("2fast", "n2m", "text", ["2fast", "not valid"]),
    ("a--b", "n2m", "text", ["a--b", "not valid"]),
    ("translation", "n2m", "text", ["translation", "already registered by s2s"]),
    ("fine", "many", "text", ["--kind", "many", "n2m, one2n, n2one"]),
    ("fine", "n2m", "video", ["--frontend", "video", "text, image, audio"]),
])
def test_bad_names_and_options_are_refused(tmp_path, name, kind, frontend, needles):
    with pytest.raises(UserError) as caught:
        new_plugin(name, kind, frontend, tmp_path / "pkg")
    for needle in needles:
        assert needle in str(caught.value)
    assert not (tmp_path / "pkg").exists()


def test_refuses_a_non_empty_folder_unless_forced(tmp_path):
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    assert_user_error(run_cli("new-plugin", "fine", "--dir", str(folder)), str(folder), "not empty", "--force")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    new_plugin("fine", "n2one", "text", folder, force=True)
    assert (folder / "notes.txt").read_text() == "mine\n"          # --force overwrites only its own files
    assert 'fine = "s2s_fine:FineTask"' in (folder / "pyproject.toml").read_text()
