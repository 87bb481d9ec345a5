"""Summarization plugin: JSONL loading with per-pipeline fields, truncation, ROUGE, bad input, and the demo pipeline."""
from __future__ import annotations

import json

import pytest

from conftest import assert_user_error, run_cli
from pipelines.settings import resolve, schema_for
from plugins.summarization import SummarizationTask
from plugins.summarization.metrics import rouge
from plugins.summarization.task import truncate_words

AESLC = {"source_field": "email", "target_field": "subject", "references_field": "annotations"}


def task(tmp_path, **data) -> SummarizationTask:
    settings = resolve({"task": "summarization", "data": data}, schema_for(SummarizationTask.data_settings), "test")
    settings.table["pipeline"] = "test"
    return SummarizationTask(settings, tmp_path)


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# -- ROUGE ---------------------------------------------------------------------------------------------

def test_rouge_against_hand_computed_values():
    # the cat sat on the mat / the cat was on the mat: 5 of 6 unigrams, 3 of 5 bigrams, LCS 5
    one = rouge(["the cat sat on the mat"], [["the cat was on the mat"]])
    assert one == pytest.approx({"rouge1": 100 * 5 / 6, "rouge2": 60.0, "rougeL": 100 * 5 / 6})
    # stemming is on: meetings/meeting -> meet, rescheduled/reschedule -> reschedul
    assert rouge(["Meetings rescheduled"], [["meeting reschedule"]]) == pytest.approx(
        {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0})
    # several references: the best match per record and per ROUGE type
    # R1: "meeting about budget" (P 2/2, R 2/3 -> .8); RL: "budget review" (LCS 1 of 2 and 2 -> .5) beats .4
    multi = rouge(["budget meeting"], [["budget review", "meeting about budget", "weekly call"]])
    assert multi == pytest.approx({"rouge1": 80.0, "rouge2": 0.0, "rougeL": 50.0})
    both = rouge(["the cat sat on the mat", "budget meeting"],
                 [["the cat was on the mat"], ["budget review", "meeting about budget", "weekly call"]])
    assert both["rouge1"] == pytest.approx((100 * 5 / 6 + 80.0) / 2)
    assert rouge([""], [["anything"]])["rouge1"] == 0.0


def test_score_names_rougeL_primary(tmp_path):
    scores = task(tmp_path).score(["budget meeting"], [["budget meeting"]])
    assert scores.primary == "rougeL" and scores.values["rougeL"] == pytest.approx(100.0)
    assert "stemming" in scores.signature.lower()


# -- loading -------------------------------------------------------------------------------------------

def test_jsonl_fields_set_per_pipeline_and_references(tmp_path):
    rows = [{"email": "Please review the budget.\nThanks", "subject": "Budget",
             "annotations": ["budget review", "review budget", "the budget"]},
            {"email": "Lunch on Friday?", "subject": "Lunch"},
            {"email": "Call me", "subject": "Call", "annotations": "call back"}]
    data = task(tmp_path, **AESLC).load(write_jsonl(tmp_path / "d.jsonl", rows), "validation")
    assert data["source"] == ["Please review the budget.\nThanks", "Lunch on Friday?", "Call me"]
    assert data["target"] == ["Budget", "Lunch", "Call"]
    assert data["references"] == [["budget review", "review budget", "the budget"], ["Lunch"], ["call back"]]
    # data.max_validation_examples shortens the validation split only
    short = task(tmp_path, **AESLC, max_validation_examples=2)
    assert len(short.load(str(tmp_path / "d.jsonl"), "validation")) == 2 and len(short.load(str(tmp_path / "d.jsonl"), "test")) == 3
    # default field names, and a summary field holding a list: train on the first, score against all
    listed = task(tmp_path).load(write_jsonl(tmp_path / "e.jsonl", [{"document": "a b c", "summary": ["x", "y"]}]), "train")
    assert listed["target"] == ["x"] and listed["references"] == [["x", "y"]]


def test_hf_spec_loads_a_dataset_folder(tmp_path):
    folder = tmp_path / "hfdata"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"document": "Budget numbers for Q3 attached", "summary": "Q3 budget"}])
    data = task(tmp_path).load(f"hf:{folder}", "train")
    assert data[0] == {"source": "Budget numbers for Q3 attached", "target": "Q3 budget", "references": ["Q3 budget"]}
    with pytest.raises(Exception, match="no column 'email'"):
        task(tmp_path, **AESLC).load(f"hf:{folder}", "train")


def test_long_documents_are_truncated_and_counted(tmp_path, capsys):
    long_doc = "\n".join(" ".join(f"w{i}_{j}" for j in range(100)) for i in range(50))   # 5,000 words
    rows = [{"email": long_doc, "subject": "s"}, {"email": "short one", "subject": "t"}]
    t = task(tmp_path, **AESLC, max_source_tokens=150)
    data = t.load(write_jsonl(tmp_path / "long.jsonl", rows), "train")
    assert len(data["source"][0].split()) == 150 and data["source"][0].count("\n") == 1   # line breaks kept
    assert data["source"][0] == long_doc[: len(data["source"][0])] and data["source"][1] == "short one"
    assert t.truncated["train"] == (1, 2)
    assert "truncated 1 of 2 documents" in capsys.readouterr().err
    assert truncate_words("a b c", 3) == ("a b c", False) and truncate_words("a b c ", 2) == ("a b", True)
    assert t.parse_inputs([long_doc, "tiny"]) == [data["source"][0], "tiny"]


# -- bad input: one line `error: ...` naming the file, line and what is wrong --------------------------

def _train_on(tmp_path, content: bytes):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    return run_cli("train", "summarize-demo", "--set", f"data.train={bad}", "--out", str(tmp_path / "run"))


def test_record_missing_a_field(tmp_path):
    content = (json.dumps({"email": "hello there", "subject": "hi"}) + "\n" + json.dumps({"email": "no subject"}) + "\n")
    assert_user_error(_train_on(tmp_path, content.encode()), "bad.jsonl:2", "'subject'")


def test_empty_document(tmp_path):
    content = json.dumps({"email": "  \n ", "subject": "hi"}) + "\n"
    assert_user_error(_train_on(tmp_path, content.encode()), "bad.jsonl:1", "empty document", "'email'")


def test_non_utf8_bytes(tmp_path):
    content = json.dumps({"email": "ok", "subject": "hi"}).encode() + b"\n" + \
        json.dumps({"email": "K\u00e4se", "subject": "x"}, ensure_ascii=False).encode("latin-1") + b"\n"
    assert_user_error(_train_on(tmp_path, content), "bad.jsonl:2", "UTF-8")


# -- the demo pipeline, end to end ---------------------------------------------------------------------

def test_demo_trains_evaluates_and_predicts(tmp_path, data_root):
    from pipelines import workflows
    dev = [json.loads(l) for l in (data_root / "summarization/aeslc/dev.jsonl").read_text(encoding="utf-8").splitlines()[:60]]
    dev_path = write_jsonl(tmp_path / "dev.jsonl", dev)
    run, progress = workflows.train("summarize-demo", [f"data.validation={dev_path}", "data.max_examples=600",
                                                       "train.max_steps=40", "train.max_epochs=10", "train.max_minutes=0"],
                                    out=tmp_path / "run", show_progress=False, log=lambda *a: None)
    assert progress.step == 40 and (run.folder / "checkpoints" / "best.safetensors").exists()
    _, split, result, predictions = workflows.evaluate(run.folder, data=f"test={dev_path}", beam=2)
    assert result["primary"] == "rougeL" and result["examples"] == 60
    assert {"rouge1", "rouge2", "rougeL"} <= set(result)
    # scored against the annotators' subjects, not the original one
    assert result["rougeL"] == pytest.approx(rouge([p.text for p in predictions], [r["annotations"] for r in dev])["rougeL"])
    assert all(p.tokens and 1 not in p.tokens and p.tokens[0] != 3 for p in predictions)   # min_length 1, no <unk>
    _, [one] = workflows.predict(run.folder, [dev[0]["email"]])
    assert one.tokens[0] not in (1, 3)                   # min_length = 1, and a copy model never emits <unk>
