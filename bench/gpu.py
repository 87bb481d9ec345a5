"""GPU figures for translate-de-en: training target tokens/s and epoch time in fp32 and bf16 autocast;
greedy and beam-5 decoding sentences/s; the share of GPU time spent in cuDNN's RNN kernels, and how busy
the GPU is (below 100%: the step waits for the host to launch kernels).

Each configuration trains a fresh model for `--epochs` epochs (the first one warms up kernels and the
allocator; the figures are from the last), then decodes test_2016_flickr with that model. fp32 is
the baseline the ratios are taken against, measured in the same run.

Usage: python bench/gpu.py [--epochs 2] [--out bench/results/gpu.json] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from pipelines.batching import plan_batches  # noqa: E402
from pipelines.examples import encode_split, make_batch  # noqa: E402
from pipelines.inference import predict_items  # noqa: E402
from pipelines.registry import get_task_class  # noqa: E402
from pipelines.runs import Run, data_root  # noqa: E402
from pipelines.training import Trainer  # noqa: E402
from pipelines.workflows import resolve_pipeline  # noqa: E402

CUDNN_KERNEL = re.compile(r"cudnn|RNN|rnn_|LSTM|lstm|GRU|gru", re.IGNORECASE)


def build(overrides: list[str], folder: Path) -> tuple[Run, Trainer, list]:
    settings = resolve_pipeline("translate-de-en", overrides)
    task = get_task_class("translation")(settings, data_root())
    train = task.load(settings["data"]["train"], "train")
    run = Run.create(settings, folder, train)
    run.place()
    split, _ = encode_split(train, run.source, run.target, "train", settings["data"]["max_length"])
    return run, Trainer(run, split, split, show_progress=False), split


def train_epochs(trainer: Trainer, split, epochs: int) -> list[dict]:
    """Seconds and target tokens/s of each epoch (updates only: no validation)."""
    cfg, run = trainer.cfg, trainer.run
    figures = []
    for epoch in range(epochs):
        plan = plan_batches(split.source_lengths, split.target_lengths, cfg["batch_tokens"], cfg["seed"], epoch)
        torch.cuda.synchronize()
        start, tokens = time.perf_counter(), 0
        for index in plan:
            _, count = trainer._update([make_batch(split, index, run.source, run.target)])
            tokens += count
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        figures.append({"epoch": epoch, "seconds": seconds, "tokens_per_s": tokens / seconds, "updates": len(plan)})
    return figures


def cudnn_share(trainer: Trainer, split, steps: int = 30) -> dict:
    """Share of GPU kernel time in cuDNN/RNN kernels over `steps` training updates, and the top kernels."""
    from torch.profiler import ProfilerActivity, profile
    run, cfg = trainer.run, trainer.cfg
    plan = plan_batches(split.source_lengths, split.target_lengths, cfg["batch_tokens"], cfg["seed"], 99)[:steps]
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for index in plan:
            trainer._update([make_batch(split, index, run.source, run.target)])
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kernels = [(e.key, e.device_time_total) for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(t for _, t in kernels) or 1.0
    rnn = sum(t for name, t in kernels if CUDNN_KERNEL.search(name))
    top = sorted(kernels, key=lambda k: -k[1])[:8]
    # busy < 1: the GPU waits for the host to launch kernels (the step is bound by Python and launches)
    return {"share": rnn / total, "gpu_busy": total / 1e6 / wall,
            "top": [{"kernel": n[:90], "share": t / total} for n, t in top]}


def decode(run: Run) -> dict:
    test = run.task.load(run.settings["data"]["test"], "test")
    sources = run.source.encode(list(test["source"]))
    result = {}
    for name, beam in (("greedy", 1), ("beam5", 5)):
        run.settings["search"]["batch_size"] = 256
        torch.cuda.synchronize()
        start = time.perf_counter()
        predictions = predict_items(run, sources, beam=beam, n_best=1)
        seconds = time.perf_counter() - start
        bleu = run.task.score([p.text for p in predictions], [[t] for t in test["target"]]).values["bleu"]
        result[name] = {"sentences_per_s": len(sources) / seconds, "seconds": seconds, "bleu": bleu}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu.json")
    parser.add_argument("--configs", default="fp32,bf16", help="comma-separated from fp32, bf16, fp16; fp32 first")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU")
    known = {"fp32": ["train.precision=fp32"], "bf16": ["train.precision=bf16"], "fp16": ["train.precision=fp16"]}
    configs = {name: known[name] for name in args.configs.split(",")}
    results: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                     "cudnn": torch.backends.cudnn.version(), "configs": {}}
    for name, extra in configs.items():
        torch.manual_seed(1)
        with tempfile.TemporaryDirectory() as folder:
            run, trainer, split = build(["train.device=cuda", *args.overrides, *extra], Path(folder))
            epochs = train_epochs(trainer, split, args.epochs)
            entry = {"epochs": epochs, "cudnn": cudnn_share(trainer, split), "decode": decode(run),
                     "peak_memory_mb": torch.cuda.max_memory_allocated() / 2 ** 20}
            torch.cuda.reset_peak_memory_stats()
        results["configs"][name] = entry
        last = epochs[-1]
        print(f"{name:>13}: epoch {last['seconds']:.2f} s, {last['tokens_per_s']:,.0f} tgt tok/s; "
              f"greedy {entry['decode']['greedy']['sentences_per_s']:.0f} sent/s (BLEU {entry['decode']['greedy']['bleu']:.1f}), "
              f"beam5 {entry['decode']['beam5']['sentences_per_s']:.0f} sent/s (BLEU {entry['decode']['beam5']['bleu']:.1f}); "
              f"cuDNN {100 * entry['cudnn']['share']:.0f}% of GPU time, GPU busy {100 * entry['cudnn']['gpu_busy']:.0f}%",
              flush=True)
    base = results["configs"]["fp32"]
    for name, entry in results["configs"].items():
        entry["speedup_vs_fp32"] = {
            "train": entry["epochs"][-1]["tokens_per_s"] / base["epochs"][-1]["tokens_per_s"],
            "greedy": entry["decode"]["greedy"]["sentences_per_s"] / base["decode"]["greedy"]["sentences_per_s"],
            "beam5": entry["decode"]["beam5"]["sentences_per_s"] / base["decode"]["beam5"]["sentences_per_s"]}
        print(f"{name:>13} vs fp32: " + ", ".join(f"{k} {v:.2f}x" for k, v in entry["speedup_vs_fp32"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
