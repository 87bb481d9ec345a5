"""Pipeline settings: the schema every named pipeline is validated against.

A pipeline is a table of sections (`data`, `model`, `train`, `search`, `task`...).
Each key has a type and, where it is a choice, its valid values, so a typo or a
wrong type is caught on load with a message naming the key and the fix.
Plugins add their own keys to the `data` section through `Task.data_settings`.
"""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import UserError


@dataclass(frozen=True)
class Key:
    """One setting: its default, its type, and (for choices) the valid values."""

    default: Any
    type: type | tuple[type, ...]
    choices: tuple[Any, ...] | None = None
    help: str = ""


CORE_SCHEMA: dict[str, dict[str, Key]] = {
    "data": {
        "train": Key("", str, help="training data (path under the data root, or hf:name)"),
        "validation": Key("", str, help="validation data"),
        "test": Key("", str, help="test data"),
        "tokenizer": Key("bpe", str, ("bpe", "char", "word"), "how text is split into tokens"),
        "vocab_size": Key(8000, int, help="BPE/word vocabulary size (per side, or joint)"),
        "joint_vocab": Key(False, bool, help="one tokenizer trained on source and target text; each side keeps the types its training text uses"),
        "lowercase": Key(False, bool, help="lowercase text before tokenizing"),
        "max_length": Key(100, int, help="training pairs longer than this (tokens, either side) are skipped"),
        "max_examples": Key(0, int, help="use only the first N training examples (0 = all)"),
    },
    "model": {
        "cell": Key("lstm", str, ("gru", "lstm")),
        "embedding": Key(256, int),
        "hidden": Key(256, int, help="encoder output and decoder size (a bidirectional encoder splits it)"),
        "layers": Key(1, int),
        "bidirectional": Key(True, bool),
        "dropout": Key(0.3, float),
        "encoder": Key("rnn", str, ("rnn", "none"), "none: the front-end's vectors are the memory (e.g. a CNN grid)"),
        "bridge": Key("last", str, ("last", "linear", "pool", "attention"),
                      "attention: c = a learned query's attention-weighted sum of all encoder states"),
        "pool": Key("mean", str, ("mean", "max", "max_mean"),
                    "pooling used by bridge = pool (max_mean: [max; mean] concatenated, then projected)"),
        "ensemble": Key(1, int, help="N->1: this many independently initialised encoder+head members trained side "
                                     "by side on the same batches; validation and prediction average their "
                                     "probabilities (1 = one model)"),
        "word_dropout": Key(0.0, float, help="text sources: in training, replace each token by <unk> with this "
                                             "probability (0 = off)"),
        "context": Key("init", str, ("init", "every_step", "both")),
        "attention": Key("general", str, ("none", "dot", "general", "additive")),
        "input_feeding": Key(False, bool, help="feed the attentional vector to the next decoder step (Luong)"),
        "tie_embeddings": Key(False, bool, help="share the decoder's input embedding and output layer"),
        "param_init": Key(0.0, float, help="draw embedding, linear and RNN weights from U(-x, x), as OpenNMT-py "
                                           "(0 = PyTorch's defaults: embeddings N(0, 1))"),
        "copy": Key(False, bool, help="pointer-generator copy attention over source tokens (text sources)"),
        "coverage": Key(False, bool, help="coverage vector fed to the attention, with a coverage loss"),
    },
    "train": {
        "seed": Key(1, int),
        "max_epochs": Key(20, int),
        "max_steps": Key(0, int, help="stop after this many updates (0 = no limit)"),
        "max_minutes": Key(0.0, float, help="stop after this much training time (0 = no limit)"),
        "batch_tokens": Key(4096, int, help="padded tokens per batch (source or target, whichever is longer)"),
        "lr": Key(1e-3, float),
        "lr_patience": Key(2, int, help="evaluations without improvement before the LR is cut"),
        "lr_factor": Key(0.5, float),
        "min_lr": Key(1e-5, float),
        "clip_norm": Key(5.0, float, help="gradient-norm clipping (0 = off)"),
        "label_smoothing": Key(0.0, float),
        "ema": Key(0.0, float, help="decay of an exponential moving average of the weights, validated and saved as "
                                    "`best` (e.g. 0.999; 0 = off)"),
        "teacher_forcing": Key(1.0, float, help="probability of feeding the gold token (at the start of training)"),
        "schedule": Key("constant", str, ("constant", "linear", "exponential", "inverse_sigmoid"),
                        "scheduled-sampling decay of the teacher-forcing ratio"),
        "schedule_k": Key(0.0, float, help="decay constant: linear slope per step, exponential base, or inverse-sigmoid k (0 = a default)"),
        "min_teacher_forcing": Key(0.0, float),
        "eval_every": Key(0, int, help="validate every N updates (0 = once per epoch)"),
        "save_every": Key(200, int, help="write the `last` checkpoint every N updates"),
        "patience": Key(5, int, help="early stopping: evaluations without improvement"),
        "threads": Key(0, int, help="torch CPU threads (0 = torch's default; with --nproc N, cores / N)"),
        "device": Key("auto", str, ("auto", "cpu", "cuda"), "auto: the GPU when torch sees one, else the CPU"),
        "precision": Key("fp32", str, ("fp32", "bf16", "fp16", "auto"),
                         "bf16/fp16: autocast (fp16 with a gradient scaler; GPU only); auto: bf16 on a CPU with native "
                         "bf16 (AVX512-BF16/AMX), else fp32"),
        "accumulate": Key(1, int, help="batches per update (gradient accumulation); updates take accumulate x processes batches"),
        "dist_timeout": Key(300.0, float, help="seconds a process waits for the others (--nproc/torchrun) before stopping with an error"),
        "coverage_weight": Key(1.0, float, help="weight of the coverage loss (model.coverage)"),
        "ctc_weight": Key(0.0, float, help="joint CTC loss on the encoder, weight 0-1 (hybrid CTC/attention)"),
        "lm_weight": Key(0.0, float, help="N->1 text models: weight of a joint language-model loss on the encoder "
                                          "(forward states predict the next word, backward the previous; needs "
                                          "model.layers = 1 if bidirectional; 0 = off)"),
    },
    "search": {
        "beam": Key(5, int),
        "length_penalty": Key(1.0, float, help="GNMT alpha: scores divided by ((5+len)/6)^alpha"),
        "max_length_ratio": Key(2.0, float, help="longest output = ratio x source length + 5 (0 = only search.max_length)"),
        "max_length": Key(100, int),
        "n_best": Key(1, int),
        "batch_size": Key(64, int, help="sentences decoded at once"),
        "min_length": Key(0, int, help="no </s> before this many tokens"),
        "no_repeat_ngram": Key(0, int, help="block repeating any n-gram of this size (0 = off)"),
        "coverage_penalty": Key(0.0, float, help="beta of the GNMT coverage penalty (0 = off)"),
        "ctc_weight": Key(0.0, float, help="decode with the joint CTC head (train.ctc_weight > 0): 1 = its greedy best "
                                           "path alone; 0 < w < 1 = the attention n-best plus that path rescored by "
                                           "(1 - w) log P_att + w log P_ctc; 0 = attention only"),
    },
}

SECTIONS = ("task", "description", *CORE_SCHEMA)


def _type_name(t: type | tuple[type, ...]) -> str:
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join({int: "integer", float: "number", bool: "true/false", str: "string"}.get(x, x.__name__) for x in types)


def nearest(name: str, options: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint, or ''."""
    close = difflib.get_close_matches(name, list(options), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def coerce(value: Any, key: Key, where: str, name: str) -> Any:
    """Check one value against its key; ints are accepted where numbers are expected."""
    if key.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, key.type) and not (key.type is int and isinstance(value, bool))
    if not ok:
        valid = f"one of {', '.join(map(str, key.choices))}" if key.choices else _type_name(key.type)
        raise UserError(f"{where}: {name} = {value!r} has the wrong type; expected {valid}")
    if key.choices is not None and value not in key.choices:
        raise UserError(f"{where}: {name} = {value!r} is not valid; choose one of {', '.join(map(str, key.choices))}")
    return value


def parse_cli_value(text: str, key: Key) -> Any:
    """Turn the text of `--set key=value` into the key's type."""
    if key.type is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        return text
    if key.type is int:
        try:
            return int(text)
        except ValueError:
            return text
    if key.type is float:
        try:
            return float(text)
        except ValueError:
            return text
    return text


class Settings:
    """A validated, fully resolved pipeline: `settings.model.hidden`, `settings["data"]["train"]`."""

    def __init__(self, table: dict[str, Any]):
        self.table = table

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.table[section]

    def __getattr__(self, section: str) -> Any:
        if section.startswith("_") or section == "table":
            raise AttributeError(section)
        try:
            value = self.table[section]
        except KeyError:
            raise AttributeError(section) from None
        return _Section(value) if isinstance(value, dict) else value

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.table)


class _Section:
    def __init__(self, values: dict[str, Any]):
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None


def schema_for(task_data_settings: dict[str, Key] | None,
               task_sections: dict[str, dict[str, Key]] | None = None) -> dict[str, dict[str, Key]]:
    """The core schema extended with a task's own data keys and sections."""
    schema = {section: dict(keys) for section, keys in CORE_SCHEMA.items()}
    schema["data"].update(task_data_settings or {})
    for section, keys in (task_sections or {}).items():
        schema.setdefault(section, {}).update(keys)
    return schema


def resolve(raw: dict[str, Any], schema: dict[str, dict[str, Key]], where: str,
            overrides: list[tuple[str, str]] = ()) -> Settings:
    """Defaults, then the pipeline's table, then `--set` overrides; every key checked."""
    table: dict[str, Any] = {"task": raw.get("task"), "description": raw.get("description", "")}
    for section, keys in schema.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise UserError(f"{where}: [{section}] must be a table of settings")
        for name in given:
            if name not in keys:
                raise UserError(f"{where}: unknown key {section}.{name}{nearest(name, keys)}; "
                                f"valid keys: {', '.join(sorted(keys))}")
        table[section] = {name: coerce(given.get(name, key.default), key, where, f"{section}.{name}")
                          if name in given else key.default for name, key in keys.items()}
    for name in raw:
        if name not in table:
            raise UserError(f"{where}: unknown section [{name}]{nearest(name, list(table))}; "
                            f"valid sections: {', '.join(table)}")
    for dotted, text in overrides:
        _apply_override(table, schema, dotted, text)
    return Settings(table)


def _apply_override(table: dict[str, Any], schema: dict[str, dict[str, Key]], dotted: str, text: str) -> None:
    """One `--set section.key=value`, checked against the schema, written into the table."""
    section, _, name = dotted.partition(".")
    if section not in schema:
        raise UserError(f"--set {dotted}: unknown section {section!r}{nearest(section, schema)}; "
                        f"valid sections: {', '.join(schema)}")
    keys = schema[section]
    if name not in keys:
        raise UserError(f"--set {dotted}: unknown key {name!r} in [{section}]{nearest(name, keys)}; "
                        f"valid keys: {', '.join(sorted(keys))}")
    table[section][name] = coerce(parse_cli_value(text, keys[name]), keys[name], "--set", dotted)


def parse_overrides(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """`section.key=value` strings into pairs, with a clear error for a malformed one."""
    result = []
    for pair in pairs:
        dotted, sep, value = pair.partition("=")
        if not sep or "." not in dotted:
            raise UserError(f"--set {pair!r}: expected section.key=value, e.g. --set train.max_steps=100")
        result.append((dotted.strip(), value.strip()))
    return result


def override_search(settings: Settings, pairs: Iterable[str]) -> None:
    """`--set search.KEY=VALUE` for evaluate and predict: decoding can change after training, nothing else can."""
    for dotted, text in parse_overrides(pairs):
        if dotted.partition(".")[0] != "search":
            raise UserError(f"--set {dotted}: evaluate and predict change only search settings (e.g. "
                            f"search.length_penalty=0.6); the rest is fixed by training")
        _apply_override(settings.table, {"search": CORE_SCHEMA["search"]}, dotted, text)
