"""`s2s new-plugin`: writes a standalone, pip-installable task plugin that works as generated.

The package has the `s2s.tasks` entry point, a task class with its loader, a front-end for the
chosen input (text, image, audio) and kind (n2m, one2n, n2one), metrics, a fixture dataset made
here (so nothing is downloaded), a demo pipeline, a README and tests. The code comes from the
templates in `templates/`; this module only picks them and fills in names.
"""
from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Callable

from .errors import UserError
from .task import KINDS

TEMPLATES = Path(__file__).resolve().parent / "templates"
FRONTENDS = ("text", "image", "audio")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*$")
KIND_WORDS = {"n2m": "sequence to sequence (N->M)", "one2n": "one input to a sequence (1->N)",
              "n2one": "sequence to one label (N->1)"}
SPLITS = {"train": 240, "validation": 40, "test": 40}


@dataclass
class Names:
    name: str          # the task name (entry point) and pipeline prefix
    package: str       # the distribution name, for pip
    module: str        # the import package
    cls: str           # the task class


def names_for(name: str) -> Names:
    if not NAME_PATTERN.match(name) or len(name) > 40:
        raise UserError(f"plugin name {name!r} is not valid; use lowercase letters, digits and single - or _ "
                        f"between them, starting with a letter (e.g. dialogue or tone-tagging)")
    module = "s2s_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in re.split(r"[-_]", name)) + "Task"
    return Names(name, "s2s-" + name.replace("_", "-"), module, cls)


def _check_target(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is a file; pick another --dir")
    if folder.exists() and any(folder.iterdir()) and not force:
        raise UserError(f"{folder}: folder exists and is not empty; pick another --dir, or add --force to "
                        f"overwrite the files new-plugin writes there")


def _taken(name: str) -> str:
    """The package already registering task `name`, or ''."""
    from .registry import discover_tasks
    try:
        tasks = discover_tasks()
    except UserError:       # a clash between other packages is not this command's business
        return ""
    return tasks[name].package if name in tasks else ""


# -- fixture data ----------------------------------------------------------------------------------
WORDS = ["red", "green", "blue", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "road", "lake"]
POSITIVE, NEGATIVE = ["good", "great", "lovely", "fine"], ["bad", "awful", "dull", "poor"]
FILLERS = ["the", "film", "was", "really", "plot", "acting", "quite", "music", "and", "very"]
PHRASES = {"greeting": ["hello there", "good morning to you", "hi , how are you ?"],
           "farewell": ["goodbye for now", "see you tomorrow", "bye , take care"],
           "thanks": ["thank you so much", "many thanks", "thanks a lot"],
           "apology": ["i am sorry", "sorry about that", "my apologies"]}
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 220, 40)}
TONES = {"low": 300.0, "mid": 800.0, "high": 1800.0}
RATE = 8000


def _text_rows(kind: str, rng: random.Random, folder: Path, split: str, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        if kind == "n2m":
            words = rng.choices(WORDS, k=rng.randint(3, 6))
            rows.append({"source": " ".join(words), "target": " ".join(reversed(words))})
        elif kind == "n2one":
            label = rng.choice(["positive", "negative"])
            words = rng.choices(FILLERS, k=rng.randint(3, 6))
            words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "positive" else NEGATIVE))
            rows.append({"source": " ".join(words), "target": label})
        else:
            category = rng.choice(sorted(PHRASES))
            rows.append({"source": category, "target": rng.choice(PHRASES[category])})
    return rows


def _draw(squares: list[tuple[str, int]], rng: random.Random, path: Path) -> None:
    """A 24 px image with 8 px squares: (colour, x offset) each, at a random height."""
    from PIL import Image, ImageDraw
    image = Image.new("RGB", (24, 24), (15, 15, 15))
    draw = ImageDraw.Draw(image)
    for colour, x in squares:
        y = rng.randint(0, 15)
        draw.rectangle([x, y, x + 7, y + 7], fill=COLOURS[colour])
    image.save(path)


def _image_rows(kind: str, rng: random.Random, folder: Path, split: str, n: int) -> list[dict]:
    (folder / "images").mkdir(exist_ok=True)
    rows, colours = [], sorted(COLOURS)
    for i in range(n):
        name = f"images/{split}_{i:03d}.png"
        if kind == "n2one":
            colour = rng.choice(colours)
            _draw([(colour, rng.randint(0, 16))], rng, folder / name)
            target = colour
        elif kind == "n2m":
            left, right = rng.choice(colours), rng.choice(colours)
            _draw([(left, rng.randint(0, 3)), (right, rng.randint(13, 16))], rng, folder / name)
            target = f"{left} on the left and {right} on the right"
        else:
            colour, side = rng.choice(colours), rng.choice(["left", "right"])
            _draw([(colour, rng.randint(0, 3) if side == "left" else rng.randint(13, 16))], rng, folder / name)
            target = f"a {colour} square on the {side}"
        rows.append({"source": name, "target": target})
    return rows


def _write_tones(tones: list[tuple[str, float]], rng: random.Random, path: Path) -> None:
    """Sine tones (name, seconds) with 50 ms gaps and a little noise, 16-bit WAV at 8 kHz."""
    import numpy as np
    import soundfile
    pieces = []
    for name, seconds in tones:
        t = np.arange(int(seconds * RATE)) / RATE
        pieces += [0.5 * np.sin(2 * math.pi * TONES[name] * t), np.zeros(int(0.05 * RATE))]
    wave = np.concatenate([np.zeros(int(0.05 * RATE))] + pieces)
    wave += 0.01 * np.random.default_rng(rng.randrange(2 ** 32)).standard_normal(len(wave))
    soundfile.write(str(path), wave.astype("float32"), RATE, subtype="PCM_16")


def _audio_rows(kind: str, rng: random.Random, folder: Path, split: str, n: int) -> list[dict]:
    (folder / "audio").mkdir(exist_ok=True)
    rows, names = [], sorted(TONES)
    for i in range(n):
        name = f"audio/{split}_{i:03d}.wav"
        if kind == "n2one":
            tone = rng.choice(names)
            _write_tones([(tone, 0.3)], rng, folder / name)
            target = tone
        elif kind == "n2m":
            tones = rng.choices(names, k=rng.randint(1, 3))
            _write_tones([(t, 0.15) for t in tones], rng, folder / name)
            target = " ".join(tones)
        else:
            tone, length = rng.choice(names), rng.choice(["short", "long"])
            _write_tones([(tone, 0.15 if length == "short" else 0.4)], rng, folder / name)
            target = f"a {length} {tone} beep"
        rows.append({"source": name, "target": target})
    return rows


def write_fixtures(folder: Path, kind: str, frontend: str, seed: int = 7) -> None:
    """data/{train,validation,test}.jsonl (and the images or clips they name)."""
    make: Callable = {"text": _text_rows, "image": _image_rows, "audio": _audio_rows}[frontend]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    scale = 1 if frontend == "text" else 2
    for split, n in SPLITS.items():
        rows = make(kind, rng, folder, split, n // scale)
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


# -- what differs between kinds and front-ends ------------------------------------------------------
def _metric(kind: str, frontend: str) -> tuple[str, bool]:
    if kind == "n2one":
        return "accuracy", True
    return ("wer", False) if frontend == "audio" else ("bleu", True)


def _pipeline_lines(kind: str, frontend: str) -> tuple[str, str, int, int]:
    """[data] and [model] lines of the demo pipeline, its batch_tokens and max_epochs."""
    data = ['tokenizer = "word"', "vocab_size = 200"]
    model = ['cell = "gru"', "embedding = 32", "hidden = 64", "dropout = 0.1"]
    if kind == "n2m":
        model.append('attention = "additive"')
    elif kind == "one2n":
        model += ['attention = "none"', 'context = "both"']
    else:
        model += ['attention = "none"', 'bridge = "pool"']
    if frontend == "image":
        model += ["grid = 3", "channels = 32"]
    batch_tokens = {"text": 300, "image": 200, "audio": 600}[frontend]
    return "\n".join(data), "\n".join(model), batch_tokens, 30


def _search_lines(kind: str) -> str:
    # 1->N: the source has length 1, so the output limit must not scale with it
    return "max_length_ratio = 0.0\nmax_length = 20\n" if kind == "one2n" else "max_length = 40\n"


MEDIA_PARSE = '''
    def parse_inputs(self, inputs: Sequence[str]) -> list[Any]:
        """`s2s predict RUN FILE...`: each input is one {what} file."""
        paths = [Path(item).expanduser() for item in inputs]
        for path in paths:
            if not path.is_file():
                raise UserError(f"{{path}}: no such file; give {what} files to predict for")
        return [str(path.resolve()) for path in paths]
'''


def _values(names: Names, kind: str, frontend: str) -> dict[str, str]:
    metric, higher = _metric(kind, frontend)
    data_lines, model_lines, batch_tokens, epochs = _pipeline_lines(kind, frontend)
    media = frontend != "text"
    what = {"image": "image", "audio": "audio"}.get(frontend, "")
    fixtures = {("text", "n2m"): "word sequences to reverse", ("text", "n2one"): "sentences labelled by the "
                "sentiment word they contain", ("text", "one2n"): "a category (greeting, thanks...) -> a phrase",
                ("image", "n2m"): "two coloured squares -> where each colour is",
                ("image", "n2one"): "one coloured square -> its colour",
                ("image", "one2n"): "one coloured square -> a caption", ("audio", "n2m"): "beeps -> low/mid/high "
                "for each", ("audio", "n2one"): "one beep -> its pitch", ("audio", "one2n"): "one beep -> a "
                "description"}[frontend, kind]
    examples = {"text": {"n2m": '"red cat moon"', "n2one": '"the film was lovely"', "one2n": "thanks"},
                "image": "$module/data/images/test_000.png", "audio": "$module/data/audio/test_000.wav"}
    predict = examples[frontend][kind] if frontend == "text" else examples[frontend].replace("$module", names.module)
    sentences = ["the red cat sat on the green mat", "a small dog ran along the road by the lake"]
    samples = ["yes", "no", "yes"] if kind == "n2one" else sentences
    return {
        "name": names.name, "package": names.package, "module": names.module, "cls": names.cls,
        "title": names.name.replace("-", " ").replace("_", " ").capitalize(), "kind": kind,
        "kind_words": KIND_WORDS[kind], "frontend": frontend, "metric": metric, "higher": str(higher),
        "data_lines": data_lines, "model_lines": model_lines, "batch_tokens": str(batch_tokens),
        "max_epochs": str(epochs),
        "source_expr": "str((path.parent / str(source)).resolve())" if media else "str(source)",
        "parse_inputs": MEDIA_PARSE.format(what=what) if media else "",
        "predict_example": predict, "fixture_words": fixtures,
        "media_note": f"; `source` is the {what} file's path, relative to the JSONL file" if media else "",
        "typing_import": "from typing import Any, Sequence\n" if media else "",
        "sample_targets": repr(samples), "wrong_output": repr("zzz"),
    }


def _render(template: str, values: dict[str, str]) -> str:
    return Template((TEMPLATES / template).read_text(encoding="utf-8")).substitute(values)


def new_plugin(name: str, kind: str, frontend: str, folder: Path | None = None, force: bool = False) -> tuple[Path, list[str]]:
    """Write the package; returns its folder and the commands to run next."""
    names = names_for(name)
    if kind not in KINDS:
        raise UserError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    if frontend not in FRONTENDS:
        raise UserError(f"--frontend {frontend!r}: choose one of {', '.join(FRONTENDS)}")
    folder = Path(folder) if folder is not None else Path(names.package)
    _check_target(folder, force)
    owner = _taken(names.name)
    if owner and owner != names.package:
        raise UserError(f"task name {names.name!r} is already registered by {owner}; pick another NAME")
    values = _values(names, kind, frontend)
    package = folder / names.module
    (folder / "tests").mkdir(parents=True, exist_ok=True)
    package.mkdir(exist_ok=True)
    # text 1->N is category-conditioned generation: its front-end embeds one category name
    frontend_template = "frontend_category" if (frontend, kind) == ("text", "one2n") else f"frontend_{frontend}"
    files = {
        folder / "pyproject.toml": "pyproject.toml.tmpl",
        folder / "README.md": "README.md.tmpl",
        package / "__init__.py": "init.py.tmpl",
        package / "task.py": "task.py.tmpl",
        package / "frontend.py": f"{frontend_template}.py.tmpl",
        package / "metrics.py": f"metrics_{values['metric']}.py.tmpl",
        folder / "tests" / f"test_{names.module}.py": "test_plugin.py.tmpl",
    }
    for path, template in files.items():
        path.write_text(_render(template, values), encoding="utf-8")
    (package / "pipelines.toml").write_text(_render("pipelines.toml.tmpl", values) + _search_lines(kind), encoding="utf-8")
    write_fixtures(package / "data", kind, frontend)
    steps = [f"python -m pip install --no-build-isolation -e {folder}",
             f"s2s list                 # shows {names.name} ({names.package} 0.1.0) and pipeline {names.name}-demo",
             f"pytest {folder / 'tests'}",
             f"s2s train {names.name}-demo",
             f"s2s evaluate runs/{names.name}-demo/<timestamp>"]
    return folder, steps
