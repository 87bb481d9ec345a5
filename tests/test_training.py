"""Checkpoints and resume: a SIGKILLed run resumes to the same weights; SIGINT/SIGTERM stop cleanly."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import os

import pytest
import torch
from safetensors import safe_open

from conftest import DATA, REPO, assert_user_error, run_cli


def checkpoint_step(path) -> int:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads(handle.metadata()["s2s"])["state"]["progress"]["step"]
    except Exception:
        return -1


def weights(path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys() if k.startswith(("model/", "optim/", "ema/"))}


def start_training(env: dict, out) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from cli import main; main()", "train", "tiny-mt", "--out", str(out),
                             "--quiet"], cwd=REPO, env={**os.environ, **env, "S2S_DATA_DIR": str(DATA)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(out, min_step: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    path = out / "checkpoints" / "last.safetensors"
    deadline = time.time() + timeout
    while time.time() < deadline:
        step = checkpoint_step(path) if path.exists() else -1
        if step >= min_step:
            return step
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("no checkpoint written in time")


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_killed_run_resumes_to_identical_weights(tmp_path, tiny_registry, ema):
    env = tiny_registry(steps=40, eval_every=10, save_every=3, ema=ema)
    reference = run_cli("train", "tiny-mt", "--out", str(tmp_path / "a"), "--quiet", env=env)
    assert reference.returncode == 0, reference.stderr

    proc = start_training(env, tmp_path / "b")
    killed_at = wait_for_checkpoint(tmp_path / "b", 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and killed_at < 40
    resumed = run_cli("train", "--resume", str(tmp_path / "b"), "--quiet", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step" in resumed.stdout

    a, b = weights(tmp_path / "a/checkpoints/last.safetensors"), weights(tmp_path / "b/checkpoints/last.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("ema/") for k in a) == bool(ema)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    log = lambda run: [(r["step"], round(r["valid_bleu"], 6)) for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())]
    assert log("a") == log("b")


def test_weight_average_is_validated_and_kept_as_best(tmp_path, tiny_registry):
    """`best` holds the average (not the last update's weights); inside `applied` the model holds it, after it
    the training weights again; the average follows the warmed-up decay."""
    from pipelines.averaging import WeightAverage
    model = torch.nn.Linear(2, 1, bias=False)
    average = WeightAverage(model, 0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    start = average.shadow[0].clone()
    average.update(1)   # decay min(0.5, 2/11): the new weights count 9/11
    assert torch.allclose(average.shadow[0], start + (1.0 - start) * 9 / 11)
    with average.applied():
        assert torch.equal(model.weight, average.shadow[0])
    assert torch.equal(model.weight, torch.ones_like(model.weight))

    env = tiny_registry(steps=12, eval_every=12, save_every=12, ema=0.9)
    assert run_cli("train", "tiny-mt", "--out", str(tmp_path / "r"), "--quiet", env=env).returncode == 0
    best, last = weights(tmp_path / "r/checkpoints/best.safetensors"), weights(tmp_path / "r/checkpoints/last.safetensors")
    names = [k for k in best if k.startswith("model/") and best[k].is_floating_point()]
    assert names and not any(k.startswith("ema/") for k in best)
    assert all(not torch.equal(best[k], last[k]) for k in names if best[k].dim() > 1)
    averaged = [last[f"ema/{i}"] for i in range(len([k for k in last if k.startswith("ema/")]))]
    assert averaged and all(any(torch.equal(best[k], a) for k in names) for a in averaged)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_with_a_resumable_checkpoint(tmp_path, tiny_registry, signum):
    env = tiny_registry(steps=400, eval_every=200, save_every=2)
    out = tmp_path / "run"
    proc = start_training(env, out)
    wait_for_checkpoint(out, 2, proc)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    line = assert_user_error(result, signal.Signals(signum).name, "--resume")
    step = int(line.split(" at step ")[1].split(";")[0])
    assert checkpoint_step(out / "checkpoints" / "last.safetensors") == step
    resumed = run_cli("train", "--resume", str(out), "--quiet", "--set", f"train.max_steps={step + 2}", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint_step(out / "checkpoints" / "last.safetensors") == step + 2


def test_checkpoints_hold_no_pickled_code(tmp_path, tiny_registry):
    env = tiny_registry(steps=3, eval_every=3, save_every=3)
    assert run_cli("train", "tiny-mt", "--out", str(tmp_path / "r"), "--quiet", env=env).returncode == 0
    for name in ("last", "best"):
        raw = (tmp_path / "r" / "checkpoints" / f"{name}.safetensors").read_bytes()
        header = json.loads(raw[8: 8 + int.from_bytes(raw[:8], "little")])     # the safetensors layout
        assert "__metadata__" in header and all(v["dtype"] for k, v in header.items() if k != "__metadata__")
        assert b"\x80\x04\x95" not in raw[:64]    # not a pickle stream
    assert not list((tmp_path / "r" / "checkpoints").glob("*.tmp"))
