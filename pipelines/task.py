"""The plugin contract: what a task supplies, and the engine's ready-made sides for text and labels.

A task plugin is a subclass of `Task` exposed under the `s2s.tasks` entry-point
group. It supplies a loader (files or `hf:` names -> a `datasets.Dataset` with
`source` and `target` columns, optionally `references`), a source side (how raw
inputs become tensors, and the front-end module that embeds them), a target side
(text tokens or a label set), and its metrics. The engine does the rest.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import datasets
import torch
from torch import Tensor, nn

from .encoder import TextEmbedding
from .errors import UserError
from .settings import Key, Settings
from .textfiles import read_lines
from .tokenization import TextVocab

KINDS = ("n2m", "one2n", "n2one")


@dataclass
class Scores:
    """Metric values, the name of the primary one, and how they were computed (e.g. a sacrebleu signature)."""

    values: dict[str, float]
    primary: str
    signature: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class SourceSide:
    """Raw inputs -> padded tensors, and the front-end that turns them into vectors."""

    def fit(self, train: datasets.Dataset, run_dir: Path) -> None:
        """Learn what the side needs from the training split (a vocabulary, statistics) and save it."""

    def load(self, run_dir: Path) -> None:
        """Restore what `fit` saved."""

    def encode(self, sources: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def length(self, item: Any) -> int:
        return len(item)

    def collate(self, items: list[Any]) -> tuple[Tensor, Tensor]:
        """Items -> (padded batch, lengths)."""
        raise NotImplementedError

    def frontend(self, model: dict[str, Any]) -> nn.Module:
        """A module mapping (batch, lengths) -> (vectors (B, S, D), lengths); it must set `output_size`."""
        raise NotImplementedError


class TargetSide:
    """What the model emits: token sequences (`text`) or one label (`label`)."""

    kind: ClassVar[str] = "text"

    def fit(self, train: datasets.Dataset, run_dir: Path) -> None: ...

    def load(self, run_dir: Path) -> None: ...

    @property
    def size(self) -> int:
        raise NotImplementedError


def pad_ids(items: Sequence[Sequence[int]], pad: int = 0) -> Tensor:
    out = torch.full((len(items), max(len(x) for x in items)), pad, dtype=torch.long)
    for i, ids in enumerate(items):
        out[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return out


def _vocab_file(data: dict, side: str) -> str:
    return "tokenizer.json" if data["joint_vocab"] else f"{side}_tokenizer.json"


def _types_file(side: str) -> str:
    """With a joint tokenizer: the tokenizer ids this side's vocabulary keeps (see TextVocab)."""
    return f"{side}_types.json"


def _fit_vocab(data: dict, side: str, train: datasets.Dataset, run_dir: Path) -> TextVocab:
    """Train a side's tokenizer; a joint one is trained once on both sides (the other side may have
    done it already) and then restricted to the types this side's training text uses."""
    path = run_dir / _vocab_file(data, side)
    if path.exists():
        vocab = TextVocab.load(path)
    else:
        columns = ["source", "target"] if data["joint_vocab"] else [side]
        texts = (row[c] for row in train for c in columns)
        vocab = TextVocab.train(texts, data["tokenizer"], data["vocab_size"], data["lowercase"])
        vocab.save(path)
    if not data["joint_vocab"]:
        return vocab
    vocab = vocab.restrict(list(train[side]))
    (run_dir / _types_file(side)).write_text(json.dumps(vocab.keep) + "\n", encoding="utf-8")
    return vocab


def _load_vocab(data: dict, side: str, run_dir: Path) -> TextVocab:
    """A side's saved vocabulary (runs made before per-side types keep the whole joint tokenizer)."""
    types = run_dir / _types_file(side)
    keep = json.loads(types.read_text(encoding="utf-8")) if data["joint_vocab"] and types.exists() else None
    return TextVocab.load(run_dir / _vocab_file(data, side), keep)


class TextSource(SourceSide):
    """Text input: a trained tokenizer and an embedding front-end."""

    def __init__(self, settings: Settings):
        self.data = settings["data"]
        self.vocab: TextVocab | None = None

    def fit(self, train: datasets.Dataset, run_dir: Path) -> None:
        self.vocab = _fit_vocab(self.data, "source", train, run_dir)

    def load(self, run_dir: Path) -> None:
        self.vocab = _load_vocab(self.data, "source", run_dir)

    def encode(self, sources: Sequence[str]) -> list[list[int]]:
        return [ids or [self.vocab.unk_id] for ids in self.vocab.encode(sources)]

    def collate(self, items: list[list[int]]) -> tuple[Tensor, Tensor]:
        return pad_ids(items, self.vocab.pad_id), torch.tensor([len(x) for x in items])

    def frontend(self, model: dict[str, Any]) -> nn.Module:
        return TextEmbedding(len(self.vocab), model["embedding"], model["dropout"], self.vocab.pad_id,
                             model["word_dropout"], self.vocab.unk_id)


class TextTarget(TargetSide):
    """Text output: token ids ending in </s>, decoded back to detokenized text."""

    kind = "text"

    def __init__(self, settings: Settings):
        self.data = settings["data"]
        self.vocab: TextVocab | None = None

    def fit(self, train: datasets.Dataset, run_dir: Path) -> None:
        self.vocab = _fit_vocab(self.data, "target", train, run_dir)

    def load(self, run_dir: Path) -> None:
        self.vocab = _load_vocab(self.data, "target", run_dir)

    @property
    def size(self) -> int:
        return len(self.vocab)

    def encode(self, targets: Sequence[str]) -> list[list[int]]:
        return self.vocab.encode(targets, add_eos=True)

    def decode(self, ids: Sequence[int]) -> str:
        return self.vocab.decode(ids)


class LabelTarget(TargetSide):
    """One label per example; the label set comes from the training data and is saved as labels.json."""

    kind = "label"

    def __init__(self, settings: Settings):
        self.labels: list[str] = []

    def fit(self, train: datasets.Dataset, run_dir: Path) -> None:
        self.labels = sorted({str(x) for x in train["target"]})
        (run_dir / "labels.json").write_text(json.dumps(self.labels, ensure_ascii=False) + "\n", encoding="utf-8")

    def load(self, run_dir: Path) -> None:
        self.labels = json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))

    @property
    def size(self) -> int:
        return len(self.labels)

    def encode(self, targets: Sequence[Any], where: str = "") -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        out = []
        for t in targets:
            if str(t) not in index:
                raise UserError(f"{where or 'data'}: label {t!r} never occurs in the training data; "
                                f"known labels: {', '.join(self.labels)}")
            out.append(index[str(t)])
        return out

    def decode(self, index: int) -> str:
        return self.labels[int(index)]


def _is_file(text: str) -> bool:
    """Whether an argument names a file; a long sentence is not a path (and would raise ENAMETOOLONG)."""
    try:
        return Path(text).is_file()
    except OSError:
        return False


class Task:
    """Base class of every task plugin. Subclasses set the class attributes and implement `load` and `score`."""

    name: str = ""                                  # the entry-point name, set on discovery
    kind: ClassVar[str] = "n2m"                     # n2m, one2n or n2one
    primary_metric: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    data_settings: ClassVar[dict[str, Key]] = {}    # the task's own [data] keys
    extra_settings: ClassVar[dict[str, dict[str, Key]]] = {}  # keys added to other sections, or new sections
    pipelines_file: ClassVar[str | None] = None     # a registry TOML shipped beside the plugin module

    def __init__(self, settings: Settings, data_root: Path):
        self.settings = settings
        self.data_root = data_root

    def resolve(self, path: str) -> Path:
        """A data path as written in a pipeline or on the command line -> a file on disk."""
        p = Path(path).expanduser()
        return p if p.is_absolute() or p.exists() else self.data_root / p

    def load(self, spec: str, split: str) -> datasets.Dataset:
        """Examples of one split: columns `source`, `target`, and optionally `references`."""
        raise NotImplementedError

    def source_side(self) -> SourceSide:
        return TextSource(self.settings)

    def target_side(self) -> TargetSide:
        return LabelTarget(self.settings) if self.kind == "n2one" else TextTarget(self.settings)

    def score(self, hypotheses: list[str], references: list[list[str]]) -> Scores:
        raise NotImplementedError

    def parse_inputs(self, inputs: Sequence[str]) -> list[Any]:
        """Inputs for `s2s predict`: each argument is a text, or a file of one input per line."""
        out: list[Any] = []
        for item in inputs:
            out.extend(read_lines(Path(item)) if _is_file(item) else [item])
        return out

    def save_attention(self, source: Any, words: list[str], attention: Tensor, folder: Path, index: int) -> list[Path]:
        """Pictures of one prediction's attention, (steps, source positions), for `s2s predict --attention-map`;
        `index` counts inputs from 1. Tasks that can draw them override this; returns the files written."""
        raise UserError(f"task {self.name!r} cannot draw attention maps; drop --attention-map")
