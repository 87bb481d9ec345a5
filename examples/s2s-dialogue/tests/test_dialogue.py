"""The dialogue plugin on its own: conversations become (context, reply) pairs, and its metrics."""
from __future__ import annotations

from pathlib import Path

from pipelines.registry import discover_tasks, load_pipelines, settings_for

from s2s_dialogue import DialogueTask
from s2s_dialogue.task import distinct


def _task(*overrides: str) -> DialogueTask:
    tasks = discover_tasks()
    return DialogueTask(settings_for(load_pipelines(tasks)["dialogue-demo"], tasks, list(overrides)), Path("data"))


def test_replies_with_their_context():
    task = _task("data.context_turns=2")
    pairs = task.pairs(["hi", "hello!", "a tea, please", "one tea coming up."])
    assert pairs == [("hi", "hello!"), ("hello! | a tea, please", "one tea coming up.")]


def test_shipped_corpus_loads():
    rows = _task().load("cafe:validation", "validation")
    assert len(rows) > 300 and all(" | " in s or s for s in rows["source"][:5])


def test_distinct_counts_unique_ngrams():
    assert distinct(["a b", "a b"], 1) == 50.0 and distinct(["a b c"], 2) == 100.0


def test_predict_inputs_keep_the_last_turns():
    task = _task("data.context_turns=2")
    assert task.parse_inputs(["hi | hello! | a tea, please"]) == ["hello! | a tea, please"]
