"""Data-parallel CPU training: examples/s and target tokens/s of 1 process vs 2 processes (gloo),
one thread each, for translate-de-en in the peers' model shape (see bench/translation.py).

Both runs make the same number of updates; every process takes its own batch per update, so
2 processes train on twice the examples per update. The ratio is measured in the same run.

Usage: python bench/distributed.py [--updates 150] [--out bench/results/distributed.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def worker(updates: int, out: str) -> None:
    """One process: build the peers' shape, make `updates` timed updates (after 5 warm-up ones); rank 0 writes."""
    import torch
    from pipelines import distributed
    from pipelines.batching import plan_batches
    from pipelines.examples import encode_split, make_batch
    from pipelines.registry import get_task_class
    from pipelines.runs import Run, data_root
    from pipelines.training import Trainer
    from pipelines.workflows import resolve_pipeline
    from translation import PEER_SHAPE

    torch.set_num_threads(1)
    world = distributed.setup("cpu", 300)
    settings = resolve_pipeline("translate-de-en", [*PEER_SHAPE, "train.device=cpu", "train.threads=1"])
    task = get_task_class("translation")(settings, data_root())
    train = task.load(settings["data"]["train"], "train")
    with tempfile.TemporaryDirectory() as folder:   # each process fits the same tokenizers in its own folder
        run = Run.create(settings, Path(folder), train)
    split, _ = encode_split(train, run.source, run.target, "train", settings["data"]["max_length"])
    trainer = Trainer(run, split, split, show_progress=False, world=world)
    plan = plan_batches(split.source_lengths, split.target_lengths, settings["train"]["batch_tokens"], 1, 0)
    warmup, examples, tokens = 5, 0, 0
    for step in range(warmup + updates):
        if step == warmup:
            distributed.barrier(world)
            start, examples, tokens = time.perf_counter(), 0, 0
        mine = distributed.step_batches(plan, step * world.size, world, 1)
        _, count = trainer._update([make_batch(split, index, run.source, run.target) for index in mine])
        examples += sum(len(index) for index in mine)
        tokens += count
    seconds = time.perf_counter() - start
    examples = int(distributed.total([examples], world)[0])
    if world.main:
        Path(out).write_text(json.dumps({"processes": world.size, "updates": updates, "seconds": seconds,
                                         "examples_per_s": examples / seconds, "tokens_per_s": tokens / seconds}))
    distributed.teardown(world)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=150)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "distributed.json")
    args = parser.parse_args()
    os.environ.setdefault("S2S_DATA_DIR", str(REPO.parent / "shared" / "data"))
    os.environ["OMP_NUM_THREADS"] = "1"
    from pipelines import distributed
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for n in (1, 2):
            path = str(Path(scratch) / f"{n}.json")
            if n == 1:
                worker(args.updates, path)
            else:
                distributed.launch(n, worker, args.updates, path)
            results[n] = json.loads(Path(path).read_text())
            print(f"{n} process{'es' if n > 1 else ''}: {results[n]['examples_per_s']:.1f} examples/s, "
                  f"{results[n]['tokens_per_s']:.0f} target tokens/s", flush=True)
    ratio = results[2]["examples_per_s"] / results[1]["examples_per_s"]
    print(f"2 processes vs 1: {ratio:.2f}x examples/s (cpu cores: {os.cpu_count()})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": results, "speedup": ratio, "cpu_count": os.cpu_count()}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
