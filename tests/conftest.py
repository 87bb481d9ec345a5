"""Shared fixtures: the data root, small slices of real data, and a CLI runner that checks exit codes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("S2S_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


def pytest_configure(config):
    os.environ["S2S_DATA_DIR"] = str(DATA)
    torch.set_num_threads(1)


@pytest.fixture
def data_root() -> Path:
    if not DATA.exists():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`s2s ARGS` in a subprocess (the real entry point), text output captured."""
    full_env = {**os.environ, "S2S_DATA_DIR": str(DATA), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", "from cli import main; main()", *args], cwd=cwd or REPO,
                          env=full_env, input=input, capture_output=True, text=True, timeout=timeout)


def assert_user_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2, one `error: ...` line on stderr, no traceback, and the line names each needle."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert len([l for l in lines if l.startswith("error:")]) == 1, result.stderr
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


def write_parallel_slice(folder: Path, n_train: int = 300, n_valid: int = 40) -> Path:
    """Small Multi30k de-en slices in `folder` (train.de/en, val.de/en); returns the folder."""
    src = DATA / "translation" / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    for split, name, n in (("train", "train", n_train), ("val", "val", n_valid)):
        for lang in ("de", "en"):
            lines = (src / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[:n]
            (folder / f"{name}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


TINY_TRANSLATION = """
[tiny-mt]
task = "translation"
[tiny-mt.data]
train = "{data}/train"
validation = "{data}/val"
test = "{data}/val"
tokenizer = "bpe"
vocab_size = 300
joint_vocab = true
[tiny-mt.model]
cell = "{cell}"
embedding = 32
hidden = 32
dropout = 0.1
attention = "general"
[tiny-mt.train]
seed = 3
batch_tokens = 400
max_steps = {steps}
eval_every = {eval_every}
save_every = {save_every}
ema = {ema}
threads = 1
[tiny-mt.search]
beam = 2
"""


@pytest.fixture
def tiny_registry(tmp_path, data_root, monkeypatch):
    """A registry file with pipeline `tiny-mt` on a 300-pair Multi30k slice; returns a function to write it."""
    data = write_parallel_slice(tmp_path / "mt")

    def make(steps: int = 12, eval_every: int = 6, save_every: int = 3, cell: str = "gru", ema: float = 0.0) -> dict:
        path = tmp_path / "registry.toml"
        path.write_text(TINY_TRANSLATION.format(data=data, steps=steps, eval_every=eval_every,
                                                save_every=save_every, cell=cell, ema=ema), encoding="utf-8")
        monkeypatch.setenv("S2S_REGISTRY", str(path))
        return {"S2S_REGISTRY": str(path)}

    return make
