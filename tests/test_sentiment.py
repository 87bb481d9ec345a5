"""Sentiment plugin (N->1): loaders, the label set, the demo through the real CLI, attention pooling, bad input."""
from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli import main
from conftest import assert_user_error, run_cli
from pipelines.bridge import AttentionPooling, Bridge
from pipelines.registry import discover_tasks, get_task_class
from pipelines.workflows import resolve_pipeline
from plugins.sentiment.metrics import accuracy, macro_f1

ROWS = [("1", "a gorgeous , witty film"), ("0", "tedious, and far too long"), ("1", 'the "best" of the year')]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sentiment_task(*overrides: str):
    settings = resolve_pipeline("sentiment-demo", overrides)
    return get_task_class("sentiment", discover_tasks())(settings, Path("."))


@pytest.fixture
def cli(capsys, monkeypatch):
    """The real CLI entry point run in this process (no interpreter start-up), as a CompletedProcess."""
    def invoke(*args: str) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["s2s", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return invoke


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """The demo pipeline trained for a few steps through the real CLI."""
    folder = tmp_path_factory.mktemp("sentiment") / "run"
    result = run_cli("train", "sentiment-demo", "--out", str(folder), "--quiet",
                     "--set", "train.max_steps=30", "--set", "train.eval_every=30")
    assert result.returncode == 0, result.stderr
    assert "4000 training examples, 993 validation" in result.stdout
    return folder


# -- loaders -----------------------------------------------------------------------------------
def test_tsv_csv_jsonl_loaders_agree(tmp_path):
    tsv = write(tmp_path / "a.tsv", "label\tsentence\tid\n" + "".join(f"{y}\t{t}\t{i}\n" for i, (y, t) in enumerate(ROWS)))
    csv_text = "text,label\n" + "".join(f'"{t.replace(chr(34), 2 * chr(34))}",{y}\n' for y, t in ROWS)
    csv = write(tmp_path / "b.csv", csv_text)
    jsonl = tmp_path / "c.jsonl.gz"
    with gzip.open(jsonl, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": t, "label": int(y)}) + "\n" for y, t in ROWS)
    task = sentiment_task()
    expected = {"source": [t for _, t in ROWS], "target": [y for y, _ in ROWS]}
    for path in (tsv, csv, jsonl):
        data = task.load(str(path), "train")
        assert data.to_dict() == expected, path


def test_custom_columns_and_a_comma_separated_tsv(tmp_path):
    path = write(tmp_path / "reviews.tsv", "stars,review\n5,great\n1,awful\n")
    data = sentiment_task("data.text_column=review", "data.label_column=stars").load(str(path), "train")
    assert data["source"] == ["great", "awful"] and data["target"] == ["5", "1"]


def test_metrics_count_correctly():
    assert accuracy(["a", "b", "b", "a"], ["a", "b", "a", "a"]) == 75.0
    # class a: tp 2, fp 0, fn 1 -> F1 0.8; class b: tp 1, fp 1, fn 0 -> F1 2/3
    assert math.isclose(macro_f1(["a", "b", "b", "a"], ["a", "b", "a", "a"]), 100 * (0.8 + 2 / 3) / 2)


# -- the demo through the CLI ------------------------------------------------------------------
def test_label_set_saved_in_run_folder(demo_run):
    assert json.loads((demo_run / "labels.json").read_text(encoding="utf-8")) == ["0", "1"]
    assert 'bridge = "attention"' in (demo_run / "config.toml").read_text(encoding="utf-8")


def test_demo_evaluate_json(demo_run, data_root):
    result = run_cli("evaluate", str(demo_run), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["primary"] == "accuracy" and metrics["examples"] == 993
    predictions = (demo_run / "eval" / "test.predictions.txt").read_text(encoding="utf-8").split()
    rows = (data_root / metrics["data"]).read_text(encoding="utf-8").splitlines()[1:]
    gold = [row.split("\t")[0] for row in rows]
    assert math.isclose(metrics["accuracy"], accuracy(predictions, gold))
    assert math.isclose(metrics["macro_f1"], macro_f1(predictions, gold))


def test_demo_predict_prints_label_and_probabilities(demo_run, tmp_path, cli):
    texts = ["a wonderful , moving film", "dull and tedious ."]
    result = run_cli("predict", str(demo_run), "--json", *texts)
    assert result.returncode == 0, result.stderr
    for line, text in zip(result.stdout.splitlines(), texts):
        record = json.loads(line)
        probs = {a["text"]: a["score"] for a in record["alternatives"]}
        assert record["input"] == text and set(probs) == {"0", "1"}
        assert math.isclose(sum(probs.values()), 1.0, rel_tol=1e-5)
        assert record["prediction"] == max(probs, key=probs.get) and record["score"] == probs[record["prediction"]]
    table = write(tmp_path / "in.tsv", "sentence\n" + "\n".join(texts) + "\n")
    plain = cli("predict", str(demo_run), str(table))
    assert plain.returncode == 0, plain.stderr
    rows = [line.split("\t") for line in plain.stdout.splitlines()]
    assert len(rows) == 2 and all(label in ("0", "1") and 0.5 <= float(p) <= 1.0 for label, p in rows)


# -- attention pooling -------------------------------------------------------------------------
def test_attention_pooling_masks_padding():
    pool = AttentionPooling(8)
    torch.nn.init.normal_(pool.query)
    states, lengths = torch.randn(3, 5, 8), torch.tensor([5, 2, 1])
    mask = torch.arange(5).unsqueeze(0) < lengths.unsqueeze(1)
    c, weights = pool(states, mask)
    assert c.shape == (3, 8) and weights.shape == (3, 5)
    assert torch.all(weights[~mask] == 0) and torch.allclose(weights.sum(1), torch.ones(3))
    assert torch.allclose(c[2], states[2, 0], atol=1e-6)          # one valid step: c is that state
    noisy = states.masked_fill(~mask.unsqueeze(-1), 1e3)          # whatever sits in the padding is ignored
    assert torch.allclose(pool(noisy, mask)[0], c, atol=1e-5)


@pytest.mark.parametrize("lstm", [False, True])
def test_attention_bridge_gives_context_and_initial_state(lstm):
    bridge = Bridge("attention", 6, layers=2, lstm=lstm)
    states, mask = torch.randn(4, 7, 6), torch.ones(4, 7, dtype=torch.bool)
    init, c = bridge(states, mask, None)
    h = init[0] if lstm else init
    assert c.shape == (4, 6) and h.shape == (2, 4, 6) and torch.equal(h[1], c)
    assert torch.allclose(c, states.mean(1), atol=1e-6)           # a zero query starts as mean pooling
    if lstm:
        assert torch.equal(init[1], torch.zeros_like(h))


# -- bad input ---------------------------------------------------------------------------------
def test_unknown_label_in_evaluation_data(demo_run, tmp_path, cli):
    path = write(tmp_path / "test.tsv", "label\tsentence\n1\tfine\nneutral\tit exists\n")
    assert_user_error(cli("evaluate", str(demo_run), "--data", f"test={path}"), "'neutral'", "0, 1", str(path))


@pytest.mark.parametrize("header,missing", [("stars\tsentence", "'label'"), ("label\treview", "'text' or 'sentence'")])
def test_missing_column_names_the_columns_found(demo_run, tmp_path, cli, header, missing):
    path = write(tmp_path / "test.tsv", f"{header}\n1\tgood\n")
    found = header.replace("\t", ", ")
    assert_user_error(cli("evaluate", str(demo_run), "--data", f"test={path}"), missing, found, str(path))


def test_empty_text_skipped_and_counted(demo_run, tmp_path, cli):
    path = write(tmp_path / "test.tsv", "label\tsentence\n1\tgood\n0\t   \n0\tbad\n")
    result = cli("evaluate", str(demo_run), "--data", f"test={path}", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["examples"] == 2
    assert "skipped 1 example(s) with an empty text" in result.stderr


def test_empty_text_is_an_error_by_setting(tmp_path, cli):
    path = write(tmp_path / "train.tsv", "label\tsentence\n1\tgood\n0\t\n")
    result = cli("train", "sentiment-demo", "--out", str(tmp_path / "run"), "--set", f"data.train={path}",
                     "--set", "data.empty_text=error")
    assert_user_error(result, f"{path}:3", "empty text", "data.empty_text")


def test_mixed_delimiters(tmp_path, cli):
    path = write(tmp_path / "train.tsv", "label\tsentence\n1\tgood fun\n0,a dull , tired film\n")
    result = cli("train", "sentiment-demo", "--out", str(tmp_path / "run"), "--set", f"data.train={path}")
    assert_user_error(result, f"{path}:3", "mixes delimiters")


# -- engine options for the N->1 path ----------------------------------------------------------
def test_word_dropout_replaces_real_tokens_by_unk_in_training_only():
    from pipelines.encoder import TextEmbedding
    embed = TextEmbedding(50, 4, 0.0, pad_id=0, word_dropout=0.5, unk_id=1)
    ids = torch.randint(4, 50, (64, 20))
    ids[:, 15:] = 0                                                # padding is never dropped
    seen = []
    embed.embed.forward = lambda x: seen.append(x) or torch.zeros(*x.shape, 4)
    embed.train()
    embed(ids, torch.full((64,), 15))
    dropped = seen[-1] != ids
    assert torch.all(seen[-1][dropped] == 1) and not dropped[:, 15:].any()
    assert 0.4 < dropped[:, :15].float().mean() < 0.6
    embed.eval()
    embed(ids, torch.full((64,), 15))
    assert torch.equal(seen[-1], ids)


def test_max_mean_pool_bridge():
    bridge = Bridge("pool", 6, layers=1, lstm=False, pool="max_mean")
    assert bridge.h_proj.in_features == 12
    states, mask = torch.randn(2, 5, 6), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    _, c = bridge(states, mask, None)
    pooled = torch.cat([states[0, :3].max(0).values, states[0, :3].mean(0)])
    assert c.shape == (2, 6) and torch.allclose(c[0], torch.tanh(bridge.h_proj(pooled)), atol=1e-6)
    from pipelines import UserError
    with pytest.raises(UserError, match="max_mean"):
        Bridge("attention", 6, layers=1, lstm=False, pool="max_mean")


def test_encoder_lm_predicts_neighbours_without_seeing_them():
    """Forward states predict the next token, backward states the previous one, over real tokens only;
    changing a token never changes the state that predicts it."""
    from pipelines.encoder_lm import EncoderLM
    from pipelines.model import Classifier
    from pipelines.encoder import TextEmbedding
    settings = resolve_pipeline("sentiment-demo", ["train.lm_weight=0.5", "model.dropout=0"])
    model = dict(settings["model"])
    net = Classifier(TextEmbedding(30, 8, 0.0), model, 2, lm=True)
    assert isinstance(net.lm, EncoderLM)
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    lengths = torch.tensor([4, 2])
    net.train()
    net(ids, lengths)
    total, count = net.lm.loss()
    assert count == 2 * (3 + 1) and total.item() > 0             # (len - 1) pairs per row and direction
    states = net.encoder(ids, lengths).states
    changed = ids.clone()
    changed[0, 2] = 11
    other = net.encoder(changed, lengths).states
    half = model["hidden"] // 2
    assert torch.allclose(states[0, :2, :half], other[0, :2, :half])   # forward states before position 2
    assert torch.allclose(states[0, 3:, half:], other[0, 3:, half:])   # backward states after it
    from pipelines import UserError
    deep = dict(model, layers=2)
    with pytest.raises(UserError, match="layers = 1"):
        Classifier(TextEmbedding(30, 8, 0.0), deep, 2, lm=True)


def test_lm_weight_trains_through_the_cli(tmp_path):
    folder = tmp_path / "run"
    result = run_cli("train", "sentiment-demo", "--out", str(folder), "--quiet", "--set", "train.max_steps=3",
                     "--set", "train.eval_every=3", "--set", "train.lm_weight=0.5", "--set", "model.word_dropout=0.1",
                     "--set", "model.bridge=pool", "--set", "model.pool=max_mean", "--set", "data.max_examples=300")
    assert result.returncode == 0, result.stderr
    log = [json.loads(line) for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert log[-1]["step"] == 3 and math.isfinite(log[-1]["train_loss"])


def test_extra_train_files_are_appended_to_the_training_split_only(tmp_path):
    main_file = write(tmp_path / "a.tsv", "label\tsentence\n1\tgood\n0\tbad\n")
    extra = write(tmp_path / "b.csv", "sentence,label\nfine,1\n")
    task = sentiment_task(f"data.extra_train={extra}, {main_file}")
    assert task.load(str(main_file), "train").to_dict() == {"source": ["good", "bad", "fine", "good", "bad"],
                                                            "target": ["1", "0", "1", "1", "0"]}
    assert task.load(str(main_file), "validation")["source"] == ["good", "bad"]


def test_ensemble_members_train_apart_and_predict_together():
    from pipelines.encoder import TextEmbedding
    from pipelines.model import Classifier
    model = dict(resolve_pipeline("sentiment-demo", ["model.ensemble=3"])["model"])
    torch.manual_seed(0)
    net = Classifier(TextEmbedding(30, 8, 0.0), model, 2, more_frontends=[TextEmbedding(30, 8, 0.0) for _ in range(2)])
    ids, lengths = torch.tensor([[5, 6, 7], [9, 10, 0]]), torch.tensor([3, 2])
    net.train()
    members = net(ids, lengths)
    assert members.shape == (2, 3, 2)
    assert not torch.allclose(members[:, 0], members[:, 1])         # independent initialisations
    members[:, 1].sum().backward()                                   # a member's loss reaches only that member
    untouched = lambda m: all(p.grad is None or not p.grad.any() for p in m.parameters())
    assert untouched(net.encoder) and untouched(net.head) and untouched(net.others[1])
    assert not untouched(net.others[0].head) and not untouched(net.others[0].encoder)
    net.eval()
    with torch.no_grad():
        each = [torch.softmax(net.head(net.encoder(ids, lengths).context), -1)] + \
               [torch.softmax(m(ids, lengths), -1) for m in net.others]
        assert torch.allclose(torch.softmax(net(ids, lengths), -1), torch.stack(each).mean(0), atol=1e-6)


def test_ensemble_trains_through_the_cli(tmp_path):
    folder = tmp_path / "run"
    result = run_cli("train", "sentiment-demo", "--out", str(folder), "--quiet", "--set", "train.max_steps=2",
                     "--set", "train.eval_every=2", "--set", "model.ensemble=2", "--set", "data.max_examples=200")
    assert result.returncode == 0, result.stderr
    assert run_cli("evaluate", str(folder), "--json").returncode == 0
    bad = run_cli("train", "sentiment-demo", "--out", str(tmp_path / "bad"), "--set", "model.ensemble=0")
    assert_user_error(bad, "model.ensemble")
