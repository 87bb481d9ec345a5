"""Captioning plugin: loaders, image handling, the synthetic set, metrics, the CNN front-end, and the CLI path."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import assert_user_error, run_cli
from pipelines import UserError
from pipelines.model import Seq2Seq
from pipelines.settings import resolve, schema_for
from plugins.captioning import CaptioningTask
from plugins.captioning import shapes
from plugins.captioning.cnn import ImageFrontend, augment
from plugins.captioning.images import CACHE
from plugins.captioning.metrics import bleu4, caption_scores, cider, reference_streams, simple_tokenize


def make_task(data_root: Path, data: dict | None = None, model: dict | None = None) -> CaptioningTask:
    raw = {"task": "captioning", "data": {"image_size": 16, **(data or {})}, "model": model or {}}
    settings = resolve(raw, schema_for(CaptioningTask.data_settings, CaptioningTask.extra_settings), "test")
    settings.table["pipeline"] = "test"
    return CaptioningTask(settings, data_root)


def picture(path: Path, color=(200, 30, 30), mode: str = "RGB", size=(24, 20)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    if mode == "RGBA":
        image = image.convert("RGBA")
        image.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))      # left half transparent
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


CAPTIONS = {"a.png": ["a red picture", "something red"], "b.png": ["a blue picture"]}


@pytest.fixture
def folder(tmp_path) -> Path:
    picture(tmp_path / "img" / "a.png", (220, 20, 20))
    picture(tmp_path / "img" / "b.png", (20, 20, 220))
    return tmp_path


def check_rows(task: CaptioningTask, spec: str, folder: Path) -> None:
    train = task.load(spec, "train")
    assert train["target"] == ["a red picture", "something red", "a blue picture"]
    assert train["source"] == [str(folder / "img" / n) for n in ("a.png", "a.png", "b.png")]
    test = task.load(spec, "test")
    assert test["source"] == [str(folder / "img" / "a.png"), str(folder / "img" / "b.png")]
    assert test["references"] == [CAPTIONS["a.png"], CAPTIONS["b.png"]]


# -- loaders -------------------------------------------------------------------------------------
def test_jsonl_loader(folder):
    path = folder / "caps.jsonl"
    path.write_text("".join(json.dumps({"image": f"img/{n}", "captions": c}) + "\n" for n, c in CAPTIONS.items()))
    check_rows(make_task(folder), str(path), folder)


@pytest.mark.parametrize("suffix", ["csv", "tsv"])
def test_csv_and_tsv_loaders(folder, suffix):
    path = folder / f"caps.{suffix}"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t" if suffix == "tsv" else ",")
        writer.writerow(["image", "caption"])
        for name, caps in CAPTIONS.items():
            writer.writerows([f"img/{name}", c] for c in caps)
    check_rows(make_task(folder), str(path), folder)


def test_csv_quoted_commas_and_custom_columns(folder):
    path = folder / "caps.csv"
    path.write_text('file,text\nimg/a.png,"red, very red"\n', encoding="utf-8")
    task = make_task(folder, {"image_field": "file", "caption_field": "text"})
    assert task.load(str(path), "train")["target"] == ["red, very red"]
    with pytest.raises(UserError, match=r"caps.csv:1: header has no column 'image'"):
        make_task(folder).load(str(path), "train")


def test_coco_json_loader(folder):
    path = folder / "captions.json"
    notes = [{"id": i, "image_id": 10 if n == "a.png" else 11, "caption": c}
             for i, (n, c) in enumerate((n, c) for n, caps in CAPTIONS.items() for c in caps)]
    path.write_text(json.dumps({"images": [{"id": 10, "file_name": "img/a.png"}, {"id": 11, "file_name": "img/b.png"}],
                               "annotations": notes}))
    check_rows(make_task(folder), str(path), folder)


def test_coco_mini_real_photographs_load(data_root):
    task = make_task(data_root, {"image_size": 32})
    data = task.load("captioning/coco_mini/val.jsonl", "validation")
    assert len(data) == 40 and all(len(r) == 5 for r in data["references"])
    table = task.load("captioning/coco_mini/val.tsv", "validation")
    assert table["source"] == data["source"]
    train = task.load("captioning/coco_mini/val.tsv", "train")
    assert len(train) == 200
    images = task.source_side().encode(data["source"])
    assert all(x.shape == (3, 32, 32) and x.dtype == torch.uint8 for x in images)


# -- images: odd modes and bad files --------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK"])
def test_grayscale_rgba_palette_images_are_converted(tmp_path, mode):
    suffix = "jpg" if mode == "CMYK" else "png"
    path = picture(tmp_path / f"x.{suffix}", (10, 200, 30), mode)
    (tmp_path / "c.jsonl").write_text(json.dumps({"image": path.name, "captions": ["green"]}) + "\n")
    task = make_task(tmp_path)
    data = task.load(str(tmp_path / "c.jsonl"), "train")
    image = task.source_side().encode(data["source"])[0]
    assert image.shape == (3, 16, 16)
    if mode == "RGBA":          # the transparent half is laid over white, the rest keeps its colour
        assert image[:, 8, 0].tolist() == [255, 255, 255] and image[:, 8, 15].tolist() == [10, 200, 30]
    if mode in ("L", "LA"):     # gray: three equal channels
        assert image[0].equal(image[1]) and image[1].equal(image[2])


def truncated(path: Path) -> Path:
    picture(path, size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_image_is_named_or_skipped(tmp_path, capsys):
    truncated(tmp_path / "broken.png")
    picture(tmp_path / "good.png")
    spec = tmp_path / "c.jsonl"
    spec.write_text(json.dumps({"image": "good.png", "captions": ["fine"]}) + "\n"
                    + json.dumps({"image": "broken.png", "captions": ["broken"]}) + "\n")
    with pytest.raises(UserError, match=r"c\.jsonl:2: .*broken\.png: unreadable or truncated image.*skip_bad_images"):
        make_task(tmp_path).load(str(spec), "train")
    task = make_task(tmp_path, {"skip_bad_images": True})
    assert task.load(str(spec), "train")["target"] == ["fine"]
    assert task.skipped == {"unreadable": 1}
    assert "skipped 1 images (1 unreadable)" in capsys.readouterr().err


def test_unreadable_file_that_is_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "c.csv").write_text("image,caption\nnotes.jpg,hello\n")
    with pytest.raises(UserError, match=r"c\.csv:2: .*notes\.jpg: unreadable"):
        make_task(tmp_path).load(str(tmp_path / "c.csv"), "train")


def test_caption_row_whose_image_is_missing(tmp_path):
    picture(tmp_path / "here.png")
    (tmp_path / "c.tsv").write_text("image\tcaption\nhere.png\tok\ngone.png\tlost\n")
    with pytest.raises(UserError, match=r"c\.tsv:3: .*gone\.png: image file not found.*data\.image_dir"):
        make_task(tmp_path).load(str(tmp_path / "c.tsv"), "train")
    task = make_task(tmp_path, {"skip_bad_images": True})
    assert task.load(str(tmp_path / "c.tsv"), "test")["references"] == [["ok"]]
    assert task.skipped == {"missing": 1}


def test_image_with_no_captions(tmp_path):
    picture(tmp_path / "a.png")
    picture(tmp_path / "b.png")
    (tmp_path / "c.jsonl").write_text(json.dumps({"image": "a.png", "captions": ["one"]}) + "\n"
                                      + json.dumps({"image": "b.png", "captions": []}) + "\n")
    with pytest.raises(UserError, match=r"c\.jsonl:2: image .*b\.png has no captions"):
        make_task(tmp_path).load(str(tmp_path / "c.jsonl"), "train")
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
                                "annotations": [{"image_id": 1, "caption": "one"}]}))
    with pytest.raises(UserError, match=r"coco\.json: image id 2: image .*b\.png has no captions"):
        make_task(tmp_path).load(str(coco), "test")
    task = make_task(tmp_path, {"skip_bad_images": True})
    assert len(task.load(str(coco), "test")) == 1 and task.skipped == {"without captions": 1}


def test_coco_caption_for_unknown_image(tmp_path):
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [], "annotations": [{"image_id": 5, "caption": "x"}]}))
    with pytest.raises(UserError, match=r"annotations\[0\] refers to image id 5"):
        make_task(tmp_path).load(str(coco), "train")


# -- the synthetic set ----------------------------------------------------------------------------
def color_shape_pairs(caption: str) -> set[tuple[str, str]]:
    words = caption.replace(",", " ").split()
    return {(a, b) for a, b in zip(words, words[1:]) if a in shapes.COLORS and b in shapes.SHAPES}


def test_shapes_set_is_deterministic_and_its_test_split_unseen(tmp_path):
    one, two = shapes.ensure(5, 60, 30, tmp_path / "a"), shapes.ensure(5, 60, 30, tmp_path / "b")
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "images/train/00007.png", "images/test/00011.png"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    other = shapes.ensure(6, 60, 30, tmp_path / "a")
    assert (other / "train.jsonl").read_bytes() != (one / "train.jsonl").read_bytes()

    task = make_task(tmp_path)
    held_out = {tuple(p) for p in json.loads((one / "held_out.json").read_text())}
    assert held_out == set(shapes.held_out(5)) and len(held_out) == shapes.HELD_OUT_PAIRS
    rows = {split: [json.loads(l) for l in (one / f"{split}.jsonl").read_text().splitlines()] for split in shapes.SPLITS}
    seen = {p for split in ("train", "validation") for r in rows[split] for c in r["captions"] for p in color_shape_pairs(c)}
    assert not seen & held_out                      # never in training or validation
    assert seen | held_out == {(c, s) for c in shapes.COLORS for s in shapes.SHAPES}   # everything else is
    for r in rows["test"]:                          # every test image has an unseen combination, in every phrasing
        assert all(color_shape_pairs(c) & held_out for c in r["captions"])
        assert len(r["captions"]) == 3 and len(set(r["captions"])) == 3
    for r in rows["train"]:                         # the captions describe the objects, left to right for rows
        assert len(color_shape_pairs(r["captions"][0])) <= len(r["objects"]) <= 3
        if r["layout"] == "row":
            assert [o["x"] for o in r["objects"]] == sorted(o["x"] for o in r["objects"])

    data = task.load("shapes:5@test", "whatever")     # the spec understood by the loader
    assert data["references"][:3] == [r["captions"] for r in rows["test"][:3]]
    image = Image.open(one / "images" / "test" / "00000.png")
    assert image.size == (shapes.CANVAS, shapes.CANVAS) and image.mode == "RGB"


def test_shapes_spec_errors(tmp_path):
    with pytest.raises(UserError, match="shapes:SEED"):
        make_task(tmp_path).load("shapes:x", "train")
    with pytest.raises(UserError, match="train, validation, test"):
        make_task(tmp_path).load("shapes:1@dev", "train")


# -- metrics ---------------------------------------------------------------------------------------
def test_cider_and_bleu_hand_checkable():
    # Two images with no n-gram in common: a hypothesis equal to its reference has cosine 1 for n = 1..4 and no
    # length penalty, so CIDEr-D = 10; a hypothesis sharing nothing scores 0. The corpus score is their mean.
    score, per_image = cider(["a red circle on the left", "green square"],
                             [["a red circle on the left"], ["two blue triangles above"]])
    assert per_image == pytest.approx([10.0, 0.0]) and score == pytest.approx(5.0)
    assert simple_tokenize("A Red-circle, on the LEFT.") == "a red circle on the left"

    # Varying reference counts: streams padded with None, which sacrebleu skips.
    refs = [["a red circle"], ["the cat sat", "a dog", "two dogs play in the grass"]]
    assert reference_streams(refs) == [["a red circle", "the cat sat"], [None, "a dog"],
                                       [None, "two dogs play in the grass"]]
    hyps = ["a red circle", "Two dogs play in the grass"]
    bleu, signature = bleu4(hyps, refs)       # each hypothesis equals one of its references (lowercased)
    assert bleu == pytest.approx(100.0) and "nrefs:var" in signature
    only_first, _ = bleu4(hyps, [r[:1] for r in refs])
    assert only_first < 50                    # so the third reference of image 2 was really used

    scores = caption_scores(hyps, refs)
    assert scores.primary == "cider" and set(scores.values) == {"cider", "bleu"}
    with pytest.raises(ValueError, match="at least one reference"):
        caption_scores(["x"], [[]])


# -- the model: CNN front-end, encoder none, the three ways of using the image -------------------
def model_settings(**overrides) -> dict:
    task = make_task(Path("."), model={"encoder": "none", "cnn_channels": 8, "grid": 4, "hidden": 24,
                                       "embedding": 12, "dropout": 0.0, **overrides})
    return task.settings["model"]


@pytest.mark.parametrize("context,attention", [("init", "none"), ("every_step", "none"), ("both", "none"),
                                               ("init", "additive"), ("init", "general"), ("init", "dot")])
def test_encoder_none_context_and_attention_shapes(context, attention):
    model = model_settings(context=context, attention=attention, bridge="pool")
    net = Seq2Seq(ImageFrontend(model, True, False), model, vocab_size=11)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    lengths = torch.full((3,), 16)
    memory = net.encode(images, lengths)
    assert net.encoder.rnn is None
    assert memory.states.shape == (3, 16, 24) and memory.context.shape == (3, 24)
    assert memory.states.abs().max() <= 1.0              # tanh projection of the grid
    assert (memory.init is None) == (context == "every_step")
    target = torch.randint(4, 11, (3, 5))
    logits, weights = net(images, lengths, target)
    assert logits.shape == (3, 5, 11)
    if attention == "none":
        assert weights is None
    else:
        assert weights.shape == (3, 5, 16) and torch.allclose(weights.sum(-1), torch.ones(3, 5))


@pytest.mark.parametrize("bridge", ["last", "linear", "pool", "attention"])
def test_encoder_none_bridges_pool_the_grid(bridge):
    model = model_settings(bridge=bridge, attention="none", cell="lstm")
    net = Seq2Seq(ImageFrontend(model, False, False), model, vocab_size=9)
    memory = net.encode(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), torch.full((2,), 16))
    assert memory.context.shape == (2, 24) and memory.init[0].shape == (1, 2, 24)


def test_augmentation_only_while_training():
    model = model_settings()
    frontend = ImageFrontend(model, True, False)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    frontend.eval()
    first, _ = frontend(images, torch.full((2,), 16))
    again, _ = frontend(images, torch.full((2,), 16))
    assert first.shape == (2, 16, 32) and torch.equal(first, again)
    x = images.float() / 255
    moved = augment(x)
    assert moved.shape == x.shape and 0 <= moved.min() and moved.max() <= 1 and not torch.equal(moved, x)


def test_torchvision_backbone_from_a_local_weights_file(tmp_path):
    import torchvision
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    model = model_settings(cnn="resnet18", cnn_weights=str(weights), grid=2)
    frontend = ImageFrontend(model, False, True)
    out, _ = frontend(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8), torch.full((2,), 4))
    assert out.shape == (2, 4, 512)
    assert not any(p.requires_grad for p in frontend.cnn.parameters())      # frozen by default
    with pytest.raises(UserError, match="never downloads"):
        ImageFrontend(model_settings(cnn="resnet18"), False, True)
    with pytest.raises(UserError, match="do not fit"):
        ImageFrontend(model_settings(cnn="resnet34", cnn_weights=str(weights)), False, True)


# -- the whole path through the CLI ---------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("caption")
    env = {"S2S_CACHE_DIR": str(root / "cache")}
    result = run_cli("train", "caption-demo", "--out", str(root / "run"), "--quiet", "--set", "train.threads=1",
                     env=env)
    assert result.returncode == 0, result.stderr
    return root / "run", root / "cache", env


def test_demo_trains_evaluates_and_predicts_with_attention_maps(demo_run, tmp_path):
    run, cache, env = demo_run
    result = run_cli("evaluate", str(run), "--json", env=env)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["primary"] == "cider" and metrics["examples"] == 20
    assert 0 < metrics["cider"] and 0 < metrics["bleu"] <= 100 and "nrefs:3" in metrics["signature"]
    predictions = (run / "eval" / "test.predictions.txt").read_text().splitlines()
    assert len(predictions) == 20 and all(re.fullmatch(r"[a-z ,]+", p) for p in predictions)

    images = sorted((next(cache.glob("captioning/shapes-*")) / "images" / "test").glob("*.png"))[:2]
    maps = tmp_path / "maps"
    result = run_cli("predict", str(run), *map(str, images), "--attention-map", str(maps), env=env)
    assert result.returncode == 0, result.stderr
    captions = result.stdout.strip().splitlines()
    assert len(captions) == 2
    for n, (image, caption) in enumerate(zip(images, captions), start=1):
        words = caption.replace(",", " ,").split()
        per_word = sorted((maps / f"{n:03d}_{image.stem}").glob("*.png"))
        assert [p.stem.split("_", 1)[1] for p in per_word] == [w if w != "," else "token" for w in words]
        overview = Image.open(maps / f"{n:03d}_{image.stem}.png")
        assert overview.size[0] > 100
        assert Image.open(per_word[0]).size == (256, 256)


def test_predict_bad_inputs(demo_run, tmp_path):
    from pipelines import workflows
    run, _, env = demo_run
    broken = truncated(tmp_path / "half.png")
    assert_user_error(run_cli("predict", str(run), str(broken), env=env), "half.png", "truncated")
    with pytest.raises(UserError, match="nope.jpg: no such image"):
        workflows.predict(run, [str(tmp_path / "nope.jpg")])
    gray = picture(tmp_path / "ok" / "gray.png", mode="L")
    raw, predictions = workflows.predict(run, [str(gray), str(gray.parent)], beam=2)   # a folder: its images
    assert raw == [str(gray), str(gray)] and predictions[0].text == predictions[1].text != ""
    with pytest.raises(UserError, match="--attention-map draws greedy"):
        workflows.predict(run, [str(gray)], beam=3, attention_dir=tmp_path / "maps")


def test_cache_is_shared_between_loader_and_source(folder):
    task = make_task(folder)
    path = folder / "caps.jsonl"
    path.write_text(json.dumps({"image": "img/a.png", "captions": ["x"]}) + "\n")
    data = task.load(str(path), "train")
    size = len(CACHE)
    first = task.source_side().encode(data["source"])[0]
    assert len(CACHE) == size and first is CACHE.get(data["source"][0], 16)


def test_hugging_face_image_feature_and_grid_check(tmp_path, monkeypatch):
    import datasets
    import plugins.captioning.task as task_module
    table = datasets.Dataset.from_dict({"image": [Image.new("L", (20, 10), 90), Image.new("RGB", (8, 8), (1, 2, 3))],
                                        "caption": ["a gray thing", "a dark thing"]}).cast_column("image", datasets.Image())
    monkeypatch.setattr(task_module, "load_hub", lambda spec, split: table)
    task = make_task(tmp_path)
    data = task.load("hf:someone/pictures", "validation")
    assert data["references"] == [["a gray thing"], ["a dark thing"]]
    first = task.source_side().encode(data["source"])[0]
    assert first.shape == (3, 16, 16) and int(first[0, 5, 5]) == 90
    table = table.cast_column("image", datasets.Image(decode=False))       # {"bytes": ..., "path": None} values
    undecoded = task.load("hf:someone/other", "validation")
    assert torch.equal(task.source_side().encode(undecoded["source"])[0], first)
    with pytest.raises(UserError, match="data.max_length to at least 144"):
        make_task(tmp_path, model={"grid": 12})
