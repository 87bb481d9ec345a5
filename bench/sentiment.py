"""Sentiment targets and the bridge ablation: train each pipeline from scratch under a fixed budget, score on dev.

Targets (issue 3), each trained within 20 minutes on a 2-core CPU:
  sentiment-mr dev accuracy >= 80%, sentiment-sst2 dev accuracy >= 85%,
  and the ablation bridge = last vs pool vs attention (attention pooling), same budget, one table.

Full run (4 pipelines x 3 bridges, each early-stopped or cut at 20 min; 43 min on one thread):
  S2S_DATA_DIR=../shared/data python bench/sentiment.py --minutes 20 --threads 1
Measured 2026-12-03 (that command, one thread, attention bridge = the registered pipelines): dev accuracy
sentiment-mr 78.25, sentiment-mr-sst-phrases 80.87, sentiment-sst2 82.68, sentiment-sst2-phrases 85.32.
Smoke test of the script itself (seconds per run):
  S2S_DATA_DIR=../shared/data python bench/sentiment.py --minutes 0.1 --threads 1 --set train.max_epochs=1

Each run is the real CLI (`s2s train NAME --max-minutes M --set model.bridge=B`, then `s2s evaluate --json`),
so the budget is the trainer's own clock (updates and validations; wall time adds start-up and tokenizer).
Writes runs under --out and prints one Markdown table (also saved as results.md / results.json there).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def s2s(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", "from cli import main; main()", *args], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"s2s {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result


def bench_one(pipeline: str, bridge: str, args: argparse.Namespace) -> dict:
    folder = args.out / f"{pipeline}-{bridge}"
    overrides = [f"model.bridge={bridge}", f"train.threads={args.threads}", *args.set]
    started = time.perf_counter()
    s2s("train", pipeline, "--out", str(folder), "--quiet", "--max-minutes", str(args.minutes),
        *[x for o in overrides for x in ("--set", o)])
    wall = time.perf_counter() - started
    metrics = json.loads(s2s("evaluate", str(folder), "--json").stdout)
    log = [json.loads(line) for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    best = max(log, key=lambda r: r["valid_accuracy"])
    return {"pipeline": pipeline, "bridge": bridge, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "best_step": best["step"], "epochs": log[-1]["epoch"] + 1, "train_minutes": log[-1]["elapsed"] / 60,
            "wall_minutes": wall / 60, "run": str(folder)}


def table(rows: list[dict]) -> str:
    lines = ["| pipeline | bridge | dev accuracy | dev macro-F1 | best step | epochs | train min | wall min |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['pipeline']} | {r['bridge']} | {r['accuracy']:.2f} | {r['macro_f1']:.2f} | {r['best_step']} | "
              f"{r['epochs']} | {r['train_minutes']:.1f} | {r['wall_minutes']:.1f} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", nargs="+",
                        default=["sentiment-mr", "sentiment-mr-sst-phrases", "sentiment-sst2", "sentiment-sst2-phrases"])
    parser.add_argument("--bridges", nargs="+", default=["last", "pool", "attention"])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for every run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-sentiment") / time.strftime("%Y%m%d-%H%M%S"))
    args = parser.parse_args()
    args.out = args.out.resolve()
    rows = []
    for pipeline in args.pipelines:
        for bridge in args.bridges:
            rows.append(bench_one(pipeline, bridge, args))
            print(f"{pipeline} bridge={bridge}: dev accuracy {rows[-1]['accuracy']:.2f}", file=sys.stderr, flush=True)
            text = table(rows)   # rewritten after every run, so a cut-short bench keeps what it measured
            (args.out / "results.md").write_text(text + "\n", encoding="utf-8")
            (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
