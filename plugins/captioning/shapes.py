"""A synthetic captioning set, generated deterministically from a seed: 1-3 coloured shapes per scene.

Each scene has several phrasings of one caption ("a small red circle to the left of a large
blue square", "a large blue square to the right of a small red circle", ...), all of them
references. Compositional split: a few (colour, shape) pairs, drawn from the seed, never occur
in the training or validation scenes, and every test scene contains at least one of them, so
the test split measures captions for attribute combinations the model has never seen.

The data spec `shapes:SEED` (optionally `shapes:SEED@SPLIT`) names it; images are written once
as PNG files under the cache folder (S2S_CACHE_DIR, default ~/.cache/s2s), never into the repo.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

VERSION = 1
CANVAS = 64          # stored image side, in pixels
SUPERSAMPLE = 4      # shapes are drawn at 4x and downsampled, for smooth edges
COLORS = {"red": (220, 50, 47), "green": (50, 170, 60), "blue": (50, 100, 230), "yellow": (240, 210, 40),
          "purple": (155, 70, 205), "white": (240, 240, 240)}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 0.075, "medium": 0.11, "large": 0.15}    # radius as a fraction of the side
HELD_OUT_PAIRS = 4
SPLITS = ("train", "validation", "test")
WHERE = {"left": ("on the left", (0.2, 0.28), (0.35, 0.65)), "right": ("on the right", (0.72, 0.8), (0.35, 0.65)),
         "top": ("at the top", (0.35, 0.65), (0.2, 0.28)), "bottom": ("at the bottom", (0.35, 0.65), (0.72, 0.8)),
         "middle": ("in the middle", (0.45, 0.55), (0.45, 0.55))}


def cache_root() -> Path:
    return Path(os.environ.get("S2S_CACHE_DIR") or Path.home() / ".cache" / "s2s").expanduser()


def held_out(seed: int) -> list[tuple[str, str]]:
    """The (colour, shape) pairs kept out of training: distinct colours, each shape at most once."""
    rng = random.Random(f"shapes-holdout-{seed}")
    colors, shapes = sorted(COLORS), list(SHAPES)
    rng.shuffle(colors)
    rng.shuffle(shapes)
    return [(colors[i], shapes[i % len(shapes)]) for i in range(HELD_OUT_PAIRS)]


def _object(rng: random.Random, pairs: list[tuple[str, str]]) -> dict:
    color, shape = rng.choice(pairs)
    return {"size": rng.choice(list(SIZES)), "color": color, "shape": shape}


def _name(obj: dict) -> str:
    return f"a {obj['size']} {obj['color']} {obj['shape']}"


def _captions(objects: list[dict], layout: str) -> list[str]:
    """Every phrasing of the scene; all are references, and training uses each."""
    if len(objects) == 1:
        a, where = _name(objects[0]), WHERE[layout][0]
        return [f"{a} {where}", f"there is {a} {where}", f"{where} there is {a}"]
    if len(objects) == 2:
        a, b = (_name(o) for o in objects)
        if layout == "horizontal":
            return [f"{a} to the left of {b}", f"{b} to the right of {a}", f"there is {a} left of {b}"]
        return [f"{a} above {b}", f"{b} below {a}", f"there is {a} above {b}"]
    a, b, c = (_name(o) for o in objects)
    return [f"{a}, {b} and {c} from left to right", f"from left to right {a}, {b} and {c}",
            f"{a}, {b} and {c} in a row"]


def make_scene(rng: random.Random, split: str, seed: int) -> dict:
    """Objects with positions (fractions of the side), the layout, and the captions."""
    hidden = held_out(seed)
    seen = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in hidden]
    count = rng.choices((1, 2, 3), weights=(2, 4, 4))[0]
    objects = [_object(rng, seen if split != "test" else seen + hidden) for _ in range(count)]
    if split == "test":     # at least one object of an unseen combination
        objects[rng.randrange(count)].update(zip(("color", "shape"), rng.choice(hidden)))
    if count == 1:
        layout = rng.choice(list(WHERE))
        _, xs, ys = WHERE[layout]
        objects[0].update(x=rng.uniform(*xs), y=rng.uniform(*ys))
    elif count == 2:
        layout = rng.choice(("horizontal", "vertical"))
        for obj, (lo, hi) in zip(objects, ((0.2, 0.32), (0.68, 0.8))):
            along, across = rng.uniform(lo, hi), rng.uniform(0.35, 0.65)
            obj.update({"x": along, "y": across} if layout == "horizontal" else {"x": across, "y": along})
    else:
        layout = "row"
        for obj, x in zip(objects, (0.17, 0.5, 0.83)):
            obj.update(x=x + rng.uniform(-0.02, 0.02), y=rng.uniform(0.35, 0.65))
    background = rng.randint(20, 70)
    return {"objects": objects, "layout": layout, "background": background, "captions": _captions(objects, layout)}


def draw(scene: dict) -> Image.Image:
    side = CANVAS * SUPERSAMPLE
    image = Image.new("RGB", (side, side), (scene["background"],) * 3)
    pen = ImageDraw.Draw(image)
    for obj in scene["objects"]:
        cx, cy, r = obj["x"] * side, obj["y"] * side, SIZES[obj["size"]] * side
        fill = COLORS[obj["color"]]
        if obj["shape"] == "circle":
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif obj["shape"] == "square":
            h = 0.85 * r
            pen.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
        elif obj["shape"] == "triangle":
            pen.polygon([(cx, cy - r), (cx - 0.95 * r, cy + 0.75 * r), (cx + 0.95 * r, cy + 0.75 * r)], fill=fill)
        else:
            pen.polygon([(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)], fill=fill)
    return image.resize((CANVAS, CANVAS), Image.Resampling.LANCZOS)


def generate(folder: Path, seed: int, n_train: int, n_eval: int) -> None:
    """Write images/<split>/<n>.png and <split>.jsonl (image, captions, objects) for the three splits."""
    for split, count in zip(SPLITS, (n_train, n_eval, n_eval)):
        rng = random.Random(f"shapes-{seed}-{split}")
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            scene = make_scene(rng, split, seed)
            name = f"images/{split}/{i:05d}.png"
            draw(scene).save(folder / name, format="PNG")
            lines.append(json.dumps({"image": name, "captions": scene["captions"], "layout": scene["layout"],
                                     "objects": scene["objects"]}) + "\n")
        (folder / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    (folder / "held_out.json").write_text(json.dumps([list(p) for p in held_out(seed)]) + "\n", encoding="utf-8")


def ensure(seed: int, n_train: int, n_eval: int, root: Path | None = None) -> Path:
    """The folder of this set, generated on first use (atomically, so parallel runs never see half of it)."""
    root = cache_root() if root is None else root
    folder = root / "captioning" / f"shapes-v{VERSION}-seed{seed}-train{n_train}-eval{n_eval}"
    if (folder / "held_out.json").exists():
        return folder
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, seed, n_train, n_eval)
    try:
        tmp.rename(folder)
    except OSError:          # another process finished first: its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
