"""Device and precision settings: CPU defaults stay exact fp32, bf16 autocast trains and decodes on the
CPU, impossible choices fail with one line, and (where a GPU is present) every precision runs on CUDA."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

from conftest import assert_user_error, run_cli
from pipelines.errors import UserError
from pipelines.hardware import KERNEL_CACHE_VARIABLES, autocast, native_cpu_bf16, pick_device, pick_precision

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cpu_defaults_are_exact_fp32():
    cpu = torch.device("cpu")
    assert pick_precision("fp32", cpu) == "fp32"
    assert pick_precision("bf16", cpu) == "bf16"
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        pick_precision("fp16", cpu)
    assert pick_device("cpu").type == "cpu"


def test_auto_precision_is_bf16_only_where_the_cpu_multiplies_bf16_natively():
    assert pick_precision("auto", torch.device("cpu")) == ("bf16" if native_cpu_bf16() else "fp32")
    assert pick_precision("auto", torch.device("cuda")) == "fp32"   # launch-bound on a GPU (bench/gpu.py)


def test_cpu_bf16_bounds_the_onednn_kernel_caches_and_keeps_a_users_own_value(monkeypatch):
    monkeypatch.delenv(KERNEL_CACHE_VARIABLES[0], raising=False)
    monkeypatch.setenv(KERNEL_CACHE_VARIABLES[1], "7")
    with autocast(torch.device("cpu"), "fp32"):
        assert KERNEL_CACHE_VARIABLES[0] not in os.environ   # fp32 never goes through oneDNN's bf16 kernels
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu")
    assert os.environ[KERNEL_CACHE_VARIABLES[0]] == "64"
    assert os.environ[KERNEL_CACHE_VARIABLES[1]] == "7"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error(tmp_path, tiny_registry):
    env = tiny_registry()
    result = run_cli("train", "tiny-mt", "--out", str(tmp_path / "r"), "--set", "train.device=cuda", "--quiet", env=env)
    assert_user_error(result, "train.device = cuda", "no GPU")


def test_bf16_autocast_trains_and_decodes_on_the_cpu(tmp_path, tiny_registry):
    env = tiny_registry(steps=4, eval_every=4)
    trained = run_cli("train", "tiny-mt", "--out", str(tmp_path / "r"), "--set", "train.precision=bf16",
                      "--set", "train.device=cpu", "--quiet", env=env)
    assert trained.returncode == 0, trained.stderr
    assert "cpu, bf16" in trained.stdout
    record = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[-1])
    types = len(json.loads((tmp_path / "r" / "target_types.json").read_text()))
    assert record["valid_loss"] == pytest.approx(math.log(types), abs=0.3)   # a fresh model: ~uniform, finite
    scored = run_cli("evaluate", str(tmp_path / "r"), "--json", env=env)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["examples"] == 40


@gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_on_the_gpu(tmp_path, tiny_registry, precision, cell):
    env = tiny_registry(steps=30, eval_every=15, cell=cell)
    overrides = ["--set", f"train.precision={precision}", "--set", "train.device=cuda"]
    trained = run_cli("train", "tiny-mt", "--out", str(tmp_path / "r"), *overrides, "--quiet", env=env)
    assert trained.returncode == 0, trained.stderr
    assert f"cuda:0, {precision}" in trained.stdout
    records = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["valid_loss"] < records[0]["valid_loss"] < 6.0   # it learns, no overflow
    resumed = run_cli("train", "--resume", str(tmp_path / "r"), "--set", "train.max_steps=32", "--quiet", env=env)
    assert resumed.returncode == 0, resumed.stderr
    scored = run_cli("evaluate", str(tmp_path / "r"), "--json", env=env)
    assert scored.returncode == 0, scored.stderr


@gpu
def test_gpu_and_cpu_fp32_agree(tmp_path, tiny_registry):
    """The same 3 updates on both devices reach the same validation loss (cuDNN, with its TF32
    matrix products, vs the CPU kernels: equal to about 3 digits, not bit for bit)."""
    env = tiny_registry(steps=3, eval_every=3)
    losses = {}
    for device in ("cpu", "cuda"):
        result = run_cli("train", "tiny-mt", "--out", str(tmp_path / device), "--set", f"train.device={device}",
                         "--set", "train.precision=fp32", "--set", "model.dropout=0", "--quiet", env=env)
        assert result.returncode == 0, result.stderr
        losses[device] = json.loads((tmp_path / device / "metrics.jsonl").read_text().splitlines()[-1])["valid_loss"]
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-3)
