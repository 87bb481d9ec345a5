"""AESLC quality bench: summarize-aeslc with and without copy, with and without coverage, same time budget.

Each variant is trained for the same number of minutes (train.max_minutes: updates and validations),
then scored on the dev split against the three annotator subjects (ROUGE-1/2/L F1 with stemming,
best reference per email). Beside ROUGE the table gives how often outputs repeat a word or a bigram
when decoded with n-gram blocking off, which is what coverage is meant to lower. For scale, the
table ends with a model-free baseline: the email's first k words (on AESLC dev, best-of-3 scoring:
lead-5 ROUGE-1 24.2, lead-10 35.0).

    S2S_DATA_DIR=../shared/data python bench/summarization.py --out bench/results/aeslc   # 4 x ~60 min
    python bench/summarization.py --quick          # a tiny budget, to check the script runs

Writes <out>/summary.md and <out>/summary.json, and one run folder per variant.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines import workflows  # noqa: E402
from pipelines.examples import encode_split  # noqa: E402
from pipelines.inference import evaluate_split  # noqa: E402
from pipelines.runs import Run, data_root  # noqa: E402

VARIANTS = {
    "copy + coverage": {"model.copy": "true", "model.coverage": "true"},
    "copy": {"model.copy": "true", "model.coverage": "false"},
    "coverage": {"model.copy": "false", "model.coverage": "true"},
    "neither": {"model.copy": "false", "model.coverage": "false"},
}
QUICK = ["data.max_examples=300", "train.max_steps=20", "train.eval_every=0", "train.max_epochs=1"]


def quick_dev(rows: int = 80) -> list[str]:
    """--quick: validate and score on the first rows of the dev split only."""
    lines = (data_root() / "summarization/aeslc/dev.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
    path = Path(tempfile.mkdtemp(prefix="aeslc-quick-")) / "dev.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [f"data.validation={path}", f"data.test={path}"]


def repeats(texts: list[str], n: int) -> float:
    """Percent of outputs that repeat some n-gram of words."""
    def repeated(words: list[str]) -> bool:
        grams = [tuple(words[i: i + n]) for i in range(len(words) - n + 1)]
        return len(grams) != len(set(grams))
    return 100.0 * sum(repeated(t.split()) for t in texts) / max(len(texts), 1)


def unblocked_repeats(folder: Path, beam: int) -> tuple[float, float]:
    """Repeated-unigram and -bigram rates on dev with search.no_repeat_ngram = 0."""
    run = Run.open(folder)
    run.settings["search"]["no_repeat_ngram"] = 0
    data = run.settings["data"]
    split, _ = encode_split(run.task.load(data["test"], "test"), run.source, run.target, data["test"])
    _, predictions = evaluate_split(run, split, beam=beam)
    texts = [p.text for p in predictions]
    return repeats(texts, 1), repeats(texts, 2)


def lead_baselines(pipeline: str, overrides: list[str], ks=(5, 10)) -> list[dict]:
    """ROUGE of the first k words of each (truncated) email, scored like the models."""
    settings = workflows.resolve_pipeline(pipeline, overrides)
    task = workflows.get_task_class(settings["task"])(settings, data_root())
    data = task.load(settings["data"]["test"], "test")
    rows = []
    for k in ks:
        hyps = [" ".join(doc.split()[:k]) for doc in data["source"]]
        values = task.score(hyps, [list(r) for r in data["references"]]).values
        rows.append({"variant": f"lead-{k} words (no model)", **values, "repeat_unigram_pct": repeats(hyps, 1),
                     "repeat_bigram_pct": repeats(hyps, 2), "steps": 0, "train_minutes": 0.0, "wall_minutes": 0.0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="summarize-aeslc")
    parser.add_argument("--minutes", type=float, default=58.0,
                        help="training minutes per variant (train.max_minutes: updates and validations)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the pipeline's train.threads, 1 for summarize-aeslc)")
    parser.add_argument("--beam", type=int, default=None, help="beam for scoring (default: the pipeline's)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/aeslc"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra section.key=value")
    parser.add_argument("--quick", action="store_true", help="tiny budget: checks that the bench runs")
    args = parser.parse_args()

    rows = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in args.variants:
        overrides = [f"{k}={v}" for k, v in VARIANTS[name].items()] + [f"train.max_minutes={args.minutes}"]
        overrides += [f"train.threads={args.threads}"] if args.threads is not None else []
        overrides += (QUICK + quick_dev() if args.quick else []) + args.overrides
        folder = args.out / f"{name.replace(' + ', '+').replace(' ', '-')}-{stamp}"
        started = time.perf_counter()
        run, progress = workflows.train(args.pipeline, overrides, out=folder, show_progress=False)
        wall = time.perf_counter() - started
        _, _, result, _ = workflows.evaluate(run.folder, beam=args.beam)
        rep1, rep2 = unblocked_repeats(run.folder, result["beam"])
        rows.append({"variant": name, "rouge1": result["rouge1"], "rouge2": result["rouge2"], "rougeL": result["rougeL"],
                     "repeat_unigram_pct": rep1, "repeat_bigram_pct": rep2, "steps": progress.step,
                     "train_minutes": progress.elapsed / 60, "wall_minutes": wall / 60, "best_step": progress.best_step,
                     "stopped": progress.stopped, "beam": result["beam"], "examples": result["examples"],
                     "run": str(run.folder)})
        print(json.dumps(rows[-1]), flush=True)

    rows += lead_baselines(args.pipeline, quick_dev() if args.quick else [])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    lines = [f"# {args.pipeline}: copy / coverage ablation ({args.minutes:g} training minutes each"
             f"{', QUICK' if args.quick else ''})", "",
             "dev split, scored against the 3 annotator subjects (best match per email), ROUGE F1 x 100, stemming on; "
             "repeat % = outputs repeating a word / bigram when decoded without n-gram blocking", "",
             "| variant | ROUGE-1 | ROUGE-2 | ROUGE-L | repeat word % | repeat bigram % | steps | train min | wall min |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} | "
              f"{r['repeat_unigram_pct']:.1f} | {r['repeat_bigram_pct']:.1f} | {r['steps']} | {r['train_minutes']:.1f} | "
              f"{r['wall_minutes']:.1f} |" for r in rows]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
