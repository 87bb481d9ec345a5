"""Speech recognition targets (issue 5): not a test, a quality benchmark that takes about an hour.

1. asr-digits: train on connected digits from four FSDD speakers (within the 30-minute budget), then score
   the test split, spoken by the fifth speaker, whom training never heard. Target: WER <= 3 %.
2. asr-vctk: the same settings trained twice, with joint CTC (train.ctc_weight = --ctc, 0.5) and without (0),
   for the same time; validation CER/WER after every `--eval-every` updates, as one table, to show which
   learns faster; then each run's best checkpoint scored on the validation part with beam search.

    S2S_DATA_DIR=../shared/data python bench/asr.py                 # everything (~90 min on 2 cores)
    S2S_DATA_DIR=../shared/data python bench/asr.py --only digits   # one part
    S2S_DATA_DIR=../shared/data python bench/asr.py --minutes 1 --digits-minutes 1   # a smoke run

Writes runs under --out (default runs/bench-asr)/<timestamp>/ and the closing note `asr.md` there.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from pipelines import workflows  # noqa: E402
from pipelines.batching import plan_eval_batches  # noqa: E402
from pipelines.runs import Run  # noqa: E402


def train_and_score(name: str, out: Path, minutes: float, overrides: list[str], split_note: str) -> dict:
    started = time.perf_counter()
    run, progress = workflows.train(name, overrides, out, max_minutes=minutes, show_progress=False, log=print)
    wall = time.perf_counter() - started
    _, _, result, _ = workflows.evaluate(run.folder)
    curve = [json.loads(l) for l in (run.folder / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return {"name": name, "folder": str(run.folder), "overrides": overrides, "steps": progress.step,
            "train_minutes": progress.elapsed / 60, "wall_minutes": wall / 60, "stopped": progress.stopped,
            "score": result, "curve": curve, "split": split_note}


@torch.no_grad()
def ctc_greedy(folder: Path, split: str) -> dict:
    """WER/CER of the run's CTC head alone (best path, repeats merged, blanks dropped): tells the encoder's
    share of the errors from the attention decoder's."""
    run = Run.open(folder)
    if getattr(run.model, "ctc", None) is None:
        return {}
    data = run.task.load(run.settings["data"][split], split)
    sources = run.source.encode(data["source"])
    hyps: list[str] = [""] * len(sources)
    for index in plan_eval_batches([run.source.length(x) for x in sources], 64):
        memory = run.model.encode(*run.source.collate([sources[i] for i in index]))
        best = run.model.ctc.proj(memory.states).argmax(-1)
        for row, i in enumerate(index):
            path = best[row, : int(memory.mask[row].sum())].tolist()
            hyps[i] = run.target.decode([t for j, t in enumerate(path) if t != 0 and (j == 0 or t != path[j - 1])])
    return run.task.score(hyps, [[t] for t in data["target"]]).values


def digits_section(args) -> list[str]:
    overrides = [f"train.threads={args.threads}"] + args.set
    r = train_and_score("asr-digits", args.out / "digits", args.digits_minutes, overrides, "test (unseen speaker)")
    s = r["score"]
    verdict = "met" if s["wer"] <= 3.0 else "NOT met"
    return ["## asr-digits: connected digits, unseen test speaker", "",
            f"Run: `{r['folder']}` ({r['steps']} updates, {r['train_minutes']:.1f} min of training, "
            f"{r['wall_minutes']:.1f} min wall clock including data building and validation; {r['stopped']}).", "",
            "| split | utterances | beam | WER % | CER % |", "|---|---|---|---|---|",
            f"| {r['split']} | {s['examples']} | {s['beam']} | {s['wer']:.2f} | {s['cer']:.2f} |",
            *[f"| {split}, CTC head alone (greedy) | | | {c['wer']:.2f} | {c['cer']:.2f} |"
              for split in ("validation", "test") if (c := ctc_greedy(Path(r["folder"]), split))], "",
            f"Target WER <= 3 % on the unseen speaker within 30 minutes: **{verdict}**.", ""]


def vctk_section(args) -> list[str]:
    runs = {}
    weights = (args.ctc, 0.0)
    for weight in weights:
        overrides = [f"train.ctc_weight={weight}", f"train.threads={args.threads}",
                     f"train.eval_every={args.eval_every}", "train.patience=1000"] + args.set
        runs[weight] = train_and_score("asr-vctk", args.out / f"vctk-ctc{weight}", args.minutes, overrides,
                                       "validation")
    lines = ["## asr-vctk: joint CTC vs attention only (same settings, same time budget)", "",
             "Validation CER / WER (%) with greedy decoding, after each block of updates:", "",
             f"| updates | minutes (CTC {args.ctc}) | CER, CTC {args.ctc} | WER, CTC {args.ctc} | minutes (CTC 0) "
             f"| CER, CTC 0 | WER, CTC 0 |",
             "|---|---|---|---|---|---|---|"]
    by_step = {w: {r["step"]: r for r in runs[w]["curve"]} for w in runs}
    for step in sorted(set(by_step[weights[0]]) | set(by_step[0.0])):
        cells = [str(step)]
        for w in weights:
            r = by_step[w].get(step)
            cells += [f"{r['elapsed'] / 60:.1f}", f"{r['valid_cer']:.1f}", f"{r['valid_wer']:.1f}"] if r else ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Best checkpoint of each, validation part (45 utterances), beam search:", "",
              "| ctc_weight | updates | beam | CER % | WER % |", "|---|---|---|---|---|"]
    for w in weights:
        s = runs[w]["score"]
        lines.append(f"| {w} | {runs[w]['steps']} | {s['beam']} | {s['cer']:.2f} | {s['wer']:.2f} |")
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["digits", "vctk"], help="run one part")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-asr"))
    parser.add_argument("--digits-minutes", type=float, default=28.0, help="asr-digits training budget")
    parser.add_argument("--minutes", type=float, default=25.0, help="asr-vctk training budget per run")
    parser.add_argument("--eval-every", type=int, default=100, help="asr-vctk: validate every N updates")
    parser.add_argument("--ctc", type=float, default=0.5, help="asr-vctk: the CTC weight compared with 0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for every run")
    args = parser.parse_args()
    args.out = args.out / time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# Speech recognition benchmark (issue 5)", "",
             f"Command: `python bench/asr.py {' '.join(sys.argv[1:])}`; torch threads {args.threads}.", ""]
    if args.only in (None, "digits"):
        lines += digits_section(args)
    if args.only in (None, "vctk"):
        lines += vctk_section(args)
    note = args.out / "asr.md"
    note.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print(f"written: {note}")


if __name__ == "__main__":
    main()
