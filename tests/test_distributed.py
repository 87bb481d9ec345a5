"""Data-parallel training on CPU with gloo: 2 processes make the updates of 1 process accumulating 2
batches, a killed 2-process run resumes exactly, and bad launches fail with one clear line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import DATA, REPO, assert_user_error, run_cli
from test_training import checkpoint_step, wait_for_checkpoint, weights

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="2-process tests need 2 CPU cores")


def start(env: dict, *args: str) -> subprocess.Popen:
    """`s2s ARGS` in its own process group, so a test can kill the launcher and its workers together."""
    return subprocess.Popen([sys.executable, "-c", "from cli import main; main()", *args], cwd=REPO,
                            env={**os.environ, **env, "S2S_DATA_DIR": str(DATA), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def worker_pids(launcher: int) -> list[int]:
    """The training processes the launcher spawned (its children running multiprocessing's spawn_main)."""
    out = subprocess.run(["pgrep", "-P", str(launcher), "-f", "spawn_main"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_two_processes_make_the_updates_of_one_accumulating_two(tmp_path, tiny_registry):
    env = tiny_registry(steps=6, eval_every=3, save_every=3)
    exact = ["--set", "model.dropout=0", "--quiet"]   # dropout masks are per rank; everything else must agree
    one = run_cli("train", "tiny-mt", "--out", str(tmp_path / "one"), "--set", "train.accumulate=2", *exact, env=env)
    assert one.returncode == 0, one.stderr
    two = run_cli("train", "tiny-mt", "--out", str(tmp_path / "two"), "--nproc", "2", *exact, env=env)
    assert two.returncode == 0, two.stderr
    assert "2 processes" in two.stdout and two.stdout.count("run folder:") == 1   # rank 0 alone logs
    a, b = (weights(tmp_path / r / "checkpoints" / "last.safetensors") for r in ("one", "two"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    initial = run_cli("train", "tiny-mt", "--out", str(tmp_path / "zero"), "--set", "train.max_steps=1", *exact, env=env)
    assert initial.returncode == 0
    moved = weights(tmp_path / "zero" / "checkpoints" / "last.safetensors")
    assert any(not torch.equal(moved[k], b[k]) for k in b if k.startswith("model/"))   # 6 updates changed them
    # validation metrics were gathered from both ranks: identical to the single process's
    lines = lambda r: (tmp_path / r / "metrics.jsonl").read_text().splitlines()
    for x, y in zip(lines("one"), lines("two")):
        x, y = json.loads(x), json.loads(y)
        assert x["step"] == y["step"] and x["valid_bleu"] == pytest.approx(y["valid_bleu"], abs=1e-6)
        assert x["valid_loss"] == pytest.approx(y["valid_loss"], rel=1e-5)


def test_accumulation_splits_the_same_way_for_any_number_of_processes(tmp_path, tiny_registry):
    """2 processes x 2 accumulated batches = 1 process x 4; a classifier (N->1) trains the same way."""
    env = tiny_registry(steps=4, eval_every=4)
    exact = ["--set", "model.dropout=0", "--quiet"]
    one = run_cli("train", "tiny-mt", "--out", str(tmp_path / "one"), "--set", "train.accumulate=4", *exact, env=env)
    two = run_cli("train", "tiny-mt", "--out", str(tmp_path / "two"), "--set", "train.accumulate=2", "--nproc", "2",
                  *exact, env=env)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr)
    a, b = (weights(tmp_path / r / "checkpoints" / "last.safetensors") for r in ("one", "two"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    sentiment = run_cli("train", "sentiment-demo", "--nproc", "2", "--out", str(tmp_path / "s"), "--quiet",
                        "--set", "train.max_steps=2", "--set", "data.max_examples=200", "--set", "model.bridge=linear",
                        env={"S2S_REGISTRY": ""})
    assert sentiment.returncode == 0, sentiment.stderr
    assert checkpoint_step(tmp_path / "s" / "checkpoints" / "last.safetensors") == 2


def test_killed_two_process_run_resumes_exactly(tmp_path, tiny_registry):
    env = tiny_registry(steps=24, eval_every=8, save_every=2)   # dropout on: each rank's RNG must come back
    args = ("train", "tiny-mt", "--nproc", "2", "--quiet")
    reference = run_cli(*args, "--out", str(tmp_path / "a"), env=env)
    assert reference.returncode == 0, reference.stderr

    proc = start(env, *args, "--out", str(tmp_path / "b"))
    last = tmp_path / "b" / "checkpoints" / "last.safetensors"
    killed_at = wait_for_checkpoint(tmp_path / "b", 3, proc, timeout=180)
    os.killpg(proc.pid, signal.SIGKILL)   # the launcher and both workers, at once
    proc.wait()
    assert killed_at < 24
    resumed = run_cli("train", "--resume", str(tmp_path / "b"), "--nproc", "2", "--quiet", env=env)
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "a" / "checkpoints" / "last.safetensors"), weights(last)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert checkpoint_step(last) == 24


def test_a_dying_process_stops_the_others_and_keeps_the_checkpoint(tmp_path, tiny_registry):
    env = tiny_registry(steps=100000, eval_every=100000, save_every=2)
    proc = start(env, "train", "tiny-mt", "--nproc", "2", "--quiet", "--out", str(tmp_path / "r"),
                 "--set", "train.max_epochs=100000", "--set", "train.dist_timeout=30")
    last = tmp_path / "r" / "checkpoints" / "last.safetensors"
    wait_for_checkpoint(tmp_path / "r", 4, proc, timeout=180)
    os.kill(worker_pids(proc.pid)[-1], signal.SIGKILL)
    try:
        out, err = proc.communicate(timeout=60)   # no hang: the launcher stops the survivor
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    line = assert_user_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                             "SIGKILL", "is intact", "--resume", "--nproc 2")
    step = checkpoint_step(last)
    assert step >= 4 and f"step {step}" in line   # the last checkpoint is whole and named


def test_more_processes_than_cores_is_a_clear_error(tiny_registry):
    env = tiny_registry()
    result = run_cli("train", "tiny-mt", "--nproc", "4096", "--quiet", env=env, timeout=60)
    assert_user_error(result, "--nproc 4096", "CPU cores")


def test_too_little_data_for_one_update_is_a_clear_error(tmp_path, tiny_registry):
    env = tiny_registry()
    result = run_cli("train", "tiny-mt", "--out", str(tmp_path / "r"), "--quiet", "--set", "train.accumulate=4096",
                     env=env, timeout=60)
    assert_user_error(result, "train.accumulate", "batches per epoch")
