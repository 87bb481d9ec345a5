"""Registry and settings: discovery, validation, and one-line errors for every user mistake."""
from __future__ import annotations


import pytest

from conftest import assert_user_error, run_cli
from pipelines import registry
from pipelines.errors import UserError


def test_list_shows_tasks_with_packages_and_pipelines():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    assert "translation      s2s" in result.stdout
    for name in ("translate-de-en", "translate-en-de", "translate-de-en-demo"):
        assert name in result.stdout


def test_info_prints_resolved_settings_with_overrides():
    result = run_cli("info", "translate-de-en", "--set", "model.cell=gru", "--set", "train.max_steps=7")
    assert result.returncode == 0, result.stderr
    assert 'cell = "gru"' in result.stdout and "max_steps = 7" in result.stdout and "beam = 5" in result.stdout


@pytest.mark.parametrize("args,needles", [
    (("info", "translate-de-em"), ["translate-de-em", "did you mean", "translate-de-en"]),
    (("train", "translate-de-en", "--set", "modle.cell=gru"), ["modle", "valid sections"]),
    (("train", "translate-de-en", "--set", "model.cel=gru"), ["model.cel", "did you mean cell"]),
    (("train", "translate-de-en", "--set", "model.cell=rnn"), ["model.cell", "gru, lstm"]),
    (("train", "translate-de-en", "--set", "train.max_steps=ten"), ["train.max_steps", "integer"]),
    (("train", "translate-de-en", "--set", "train.max_steps"), ["section.key=value"]),
    (("evaluate", "/no/such/run"), ["/no/such/run", "not a run folder"]),
])
def test_user_mistakes_print_one_line(args, needles):
    assert_user_error(run_cli(*args), *needles)


REGISTRY_ERRORS = {
    'unknown_task': ('[p]\ntask = "translatoin"\n', ["translatoin", "did you mean translation", "installed tasks"]),
    'unknown_section': ('[p]\ntask = "translation"\n[p.modle]\ncell = "gru"\n', ["[modle]", "valid sections"]),
    'unknown_key': ('[p]\ntask = "translation"\n[p.model]\ncells = "gru"\n', ["model.cells", "did you mean cell"]),
    'wrong_type': ('[p]\ntask = "translation"\n[p.model]\nhidden = "big"\n', ["model.hidden", "integer"]),
    'bad_choice': ('[p]\ntask = "translation"\n[p.model]\nattention = "luong"\n', ["model.attention", "dot, general, additive"]),
    'no_task': ('[p]\n[p.model]\nhidden = 3\n', ["task ="]),
    'bad_toml': ('[p\ntask = 1', ["not valid TOML"]),
}


@pytest.mark.parametrize("case", sorted(REGISTRY_ERRORS))
def test_malformed_registry_entries_name_file_and_key(tmp_path, case):
    text, needles = REGISTRY_ERRORS[case]
    path = tmp_path / "registry.toml"
    path.write_text(text)
    assert_user_error(run_cli("list", env={"S2S_REGISTRY": str(path)}), str(path), *needles)


class _Dist:
    def __init__(self, name):
        self.metadata = {"Name": name}
        self.version = "1.0"


class _EntryPoint:
    def __init__(self, name, value, package, loader):
        self.name, self.value, self.dist, self._loader = name, value, _Dist(package), loader

    def load(self):
        return self._loader()


def _fake_entry_points(monkeypatch, points):
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: points if group == "s2s.tasks" else [])


def test_duplicate_task_name_names_both_packages(monkeypatch):
    from plugins.translation import TranslationTask
    _fake_entry_points(monkeypatch, [_EntryPoint("mt", "a:T", "pkg-one", lambda: TranslationTask),
                                     _EntryPoint("mt", "b:T", "pkg-two", lambda: TranslationTask)])
    with pytest.raises(UserError, match="pkg-one and pkg-two"):
        registry.discover_tasks()


def test_broken_plugin_is_listed_and_the_rest_still_work(monkeypatch):
    from plugins.translation import TranslationTask

    def boom():
        raise ImportError("no module named missing_dependency")

    class Incomplete(registry.Task):
        kind = "n2m"

    _fake_entry_points(monkeypatch, [_EntryPoint("mt", "a:T", "good", lambda: TranslationTask),
                                     _EntryPoint("bad", "b:T", "broken-pkg", boom),
                                     _EntryPoint("half", "c:T", "half-pkg", lambda: Incomplete)])
    tasks = registry.discover_tasks()
    assert tasks["mt"].cls is TranslationTask
    assert "missing_dependency" in tasks["bad"].error
    assert "load" in tasks["half"].error and "primary_metric" in tasks["half"].error
    with pytest.raises(UserError, match="broken-pkg is broken"):
        registry.get_task_class("bad", tasks)
