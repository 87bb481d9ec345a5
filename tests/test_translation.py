"""Translation plugin: loaders, bad input, metrics, and the CLI path train -> evaluate -> predict."""
from __future__ import annotations

import gzip
import json

import pytest
import sacrebleu

from conftest import assert_user_error, run_cli
from pipelines.runs import Run
from pipelines.settings import resolve, schema_for
from plugins.translation import TranslationTask


def task(tmp_path, **data) -> TranslationTask:
    settings = resolve({"task": "translation", "data": data}, schema_for(TranslationTask.data_settings), "test")
    settings.table["pipeline"] = "test"
    return TranslationTask(settings, tmp_path)


def test_parallel_files_prefix_and_gzip(tmp_path):
    (tmp_path / "x.de").write_text("Hallo Welt\nGuten Tag\n", encoding="utf-8")
    with gzip.open(tmp_path / "x.en.gz", "wt", encoding="utf-8") as f:
        f.write("Hello world\nGood day\n")
    data = task(tmp_path).load("x.de,x.en.gz", "test")
    assert data["source"] == ["Hallo Welt", "Guten Tag"] and data["target"] == ["Hello world", "Good day"]
    assert task(tmp_path, target_lang="en.gz").load("x", "train")["target"][1] == "Good day"


def test_jsonl_with_field_names(tmp_path):
    rows = [{"de": "Ein Hund", "en": "A dog"}, {"de": "Eine Katze", "en": "A cat"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = task(tmp_path, source_field="de", target_field="en").load("d.jsonl", "train")
    assert data["target"] == ["A dog", "A cat"]
    line = pytest.raises(Exception, task(tmp_path).load, "d.jsonl", "train").value
    assert "d.jsonl:1" in str(line) and "'source'" in str(line)


def test_hf_spec_loads_a_dataset_folder(tmp_path):
    folder = tmp_path / "hfdata"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"translation": {"de": "Ein Haus", "en": "A house"}}) + "\n")
    data = task(tmp_path).load(f"hf:{folder}", "train")
    assert data[0] == {"source": "Ein Haus", "target": "A house"}
    with pytest.raises(Exception, match="could not load"):
        task(tmp_path).load("hf:no-such-owner/no-such-dataset-xyz", "train")


def test_scores_match_sacrebleu_and_carry_signatures(tmp_path):
    hyps, refs = ["a man is riding a bike .", "two dogs play"], ["a man rides a bike .", "two dogs are playing"]
    scores = task(tmp_path).score(hyps, [[r] for r in refs])
    assert scores.values["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert scores.values["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert "tok:13a" in scores.signature and "nc:6" in scores.signature and scores.primary == "bleu"


BAD_FILES = {
    "length": (("a\nb\nc\n", "x\ny\n"), ["src.de", "3 lines", "tgt.en", "2"]),
    "utf8": (("gut\nKäse\n".encode("latin-1"), b"good\ncheese\n"), ["src.de:2", "UTF-8"]),
    "empty": (("", "x\n"), ["src.de", "empty"]),
    "empty_line": (("a\n\nc\n", "x\ny\nz\n"), ["src.de:2", "empty line"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_parallel_files_give_one_line_errors(tmp_path, case, data_root):
    (src, tgt), needles = BAD_FILES[case]
    for name, content in (("src.de", src), ("tgt.en", tgt)):
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    run = _tiny_run(tmp_path, data_root)
    result = run_cli("evaluate", str(run), "--data", f"test={tmp_path / 'src.de'},{tmp_path / 'tgt.en'}")
    assert_user_error(result, *needles)


def test_missing_file(tmp_path, data_root):
    run = _tiny_run(tmp_path, data_root)
    assert_user_error(run_cli("evaluate", str(run), "--data", f"test={tmp_path}/nope.de,{tmp_path}/nope.en"),
                      "nope.de", "not found")


_RUN_CACHE: dict = {}


def _tiny_run(tmp_path, data_root):
    """One trained tiny run shared by the tests of this module (trained through the real CLI)."""
    if "run" not in _RUN_CACHE:
        from conftest import write_parallel_slice, TINY_TRANSLATION
        import tempfile
        from pathlib import Path
        base = Path(tempfile.mkdtemp(prefix="s2s-mt-"))
        data = write_parallel_slice(base / "mt")
        registry = base / "registry.toml"
        registry.write_text(TINY_TRANSLATION.format(data=data, steps=30, eval_every=15, save_every=15, cell="lstm", ema=0.0))
        result = run_cli("train", "tiny-mt", "--out", str(base / "run"), "--quiet", env={"S2S_REGISTRY": str(registry)})
        assert result.returncode == 0, result.stderr
        _RUN_CACHE["run"] = base / "run"
    return _RUN_CACHE["run"]


def test_train_evaluate_predict_through_the_cli(tmp_path, data_root):
    run = _tiny_run(tmp_path, data_root)
    for name in ("config.toml", "tokenizer.json", "metrics.jsonl", "checkpoints/last.safetensors",
                 "checkpoints/best.safetensors"):
        assert (run / name).exists(), name
    log = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [15, 30] and log[-1]["valid_loss"] < log[0]["valid_loss"] + 1.0
    result = run_cli("evaluate", str(run), "--json", "--beam", "2")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["examples"] == 40 and 0 <= metrics["bleu"] <= 100 and "tok:13a" in metrics["signature"]
    predictions = (run / "eval" / "test.predictions.txt").read_text().splitlines()
    references = Run.open(run).task.load(metrics["data"], "test")["target"]
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
    text = run_cli("evaluate", str(run))
    assert "signature: BLEU nrefs:1" in text.stdout
    pred = run_cli("predict", str(run), "Ein Mann fährt Rad.", "Zwei Hunde.", "--json", "--n-best", "2")
    rows = [json.loads(l) for l in pred.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["Ein Mann fährt Rad.", "Zwei Hunde."]
    assert all(len(r["alternatives"]) == 2 and r["alternatives"][0]["score"] >= r["alternatives"][1]["score"] for r in rows)
    piped = run_cli("predict", str(run), input="Ein Mann fährt Rad.\n")
    assert piped.stdout.strip() == rows[0]["prediction"]


def test_evaluate_and_predict_take_search_settings_only(tmp_path, data_root):
    run = _tiny_run(tmp_path, data_root)
    short = run_cli("evaluate", str(run), "--json", "--set", "search.max_length=2", "--set", "search.max_length_ratio=0")
    assert short.returncode == 0, short.stderr
    metrics = json.loads(short.stdout)
    assert metrics["search"]["max_length"] == 2 and metrics["search"]["max_length_ratio"] == 0.0
    predictions = (run / "eval" / "test.predictions.txt").read_text().splitlines()
    assert predictions and all(len(p.split()) <= 2 for p in predictions)     # at most 2 BPE pieces each
    pred = run_cli("predict", str(run), "Ein Mann fährt Rad.", "--set", "search.max_length=1", "--set",
                   "search.max_length_ratio=0")
    assert pred.returncode == 0 and len(pred.stdout.split()) <= 1
    assert_user_error(run_cli("evaluate", str(run), "--set", "train.lr=1"), "train.lr", "only search settings")
    assert_user_error(run_cli("evaluate", str(run), "--set", "search.beem=2"), "search.beem", "did you mean beam")
    assert_user_error(run_cli("predict", str(run), "x", "--set", "search.beam=wide"), "search.beam", "integer")
