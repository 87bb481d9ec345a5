"""Captioning targets (issue 6): the seeds' three ways of feeding the image, on caption-shapes, same budget each;
and caption-coco-mini end to end as a smoke result.

Targets: caption-shapes, attention variant: BLEU-4 >= 60 and CIDEr >= 2.0 on the unseen-combination test
split, trained within 30 minutes on this CPU. The table compares, under the same time budget:
  init        the pooled image vector is the decoder's initial state (Show and Tell), no attention
  every_step  the pooled vector is fed to the decoder at every step, no attention
  attention   initial state + additive attention over the 8x8 CNN grid (Show, Attend and Tell)

Commands (from the repo root, S2S_DATA_DIR pointing at the shared data):
  python bench/captioning.py shapes --minutes 28            # the table; about 3 x 30 minutes
  python bench/captioning.py shapes --minutes 28 --variants attention   # only the target run
  python bench/captioning.py coco-mini --minutes 10         # smoke figures on 200 real photographs
  python bench/captioning.py shapes --quick                 # proves the script works (about a minute)
Results: a Markdown table on stdout and JSON under --out (default bench/results/captioning).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines import workflows  # noqa: E402

VARIANTS = {
    "init": ["model.attention=none", "model.context=init"],
    "every_step": ["model.attention=none", "model.context=every_step"],
    "attention": ["model.attention=additive", "model.context=init"],
    "both": ["model.attention=none", "model.context=both"],        # optional: --variants init,both,...
}
DEFAULT_VARIANTS = "init,every_step,attention"
QUICK = ["data.shapes_train=200", "data.shapes_eval=40", "train.max_epochs=2"]


def run_one(pipeline: str, label: str, overrides: list[str], minutes: float, out: Path) -> dict:
    folder = out / f"{pipeline}-{label}-{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.perf_counter()
    run, progress = workflows.train(pipeline, overrides, folder, None, minutes, show_progress=False,
                                    log=lambda line: print(f"  [{label}] {line}", file=sys.stderr))
    _, _, result, _ = workflows.evaluate(run.folder)
    return {"variant": label, "pipeline": pipeline, "overrides": overrides, "run": str(run.folder),
            "cider": result["cider"], "bleu": result["bleu"], "examples": result["examples"], "beam": result["beam"],
            "steps": progress.step, "epochs": progress.epoch, "train_minutes": round(progress.elapsed / 60, 1),
            "wall_minutes": round((time.perf_counter() - started) / 60, 1), "stopped": progress.stopped,
            "best_valid_cider": progress.best, "signature": result["signature"]}


def table(rows: list[dict]) -> str:
    lines = ["| variant | test CIDEr | test BLEU-4 | steps | epochs | train min | stopped |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['cider']:.2f} | {r['bleu']:.1f} | {r['steps']} | {r['epochs']} | "
              f"{r['train_minutes']} | {r['stopped']} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["shapes", "coco-mini"])
    parser.add_argument("--minutes", type=float, default=28.0, help="training budget per run")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"shapes: comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra section.key=value")
    parser.add_argument("--quick", action="store_true", help="tiny data and budget: checks the script runs")
    parser.add_argument("--out", type=Path, default=Path("bench/results/captioning"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    common = [f"train.threads={args.threads}", *args.overrides]
    minutes = 0.3 if args.quick else args.minutes
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.which == "shapes":
        extra = QUICK if args.quick else []
        rows = [run_one("caption-shapes", v, VARIANTS[v] + common + extra, minutes, args.out)
                for v in args.variants.split(",")]
    else:
        extra = ["train.max_epochs=1"] if args.quick else []
        rows = [run_one("caption-coco-mini", "smoke", common + extra, minutes, args.out)]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"{args.which}-{stamp}.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"{args.which}: test split, budget {minutes} min per run, beam {rows[0]['beam']}")
    print(table(rows))
    if args.which == "shapes" and "attention" in [r["variant"] for r in rows]:
        best = next(r for r in rows if r["variant"] == "attention")
        ok = best["bleu"] >= 60 and best["cider"] >= 2.0
        print(f"target (attention: BLEU-4 >= 60 and CIDEr >= 2.0): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
