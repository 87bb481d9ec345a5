"""Speech recognition targets (issue 5): not a test, a quality benchmark that takes about an hour.

1. asr-digits: train on connected digits from four FSDD speakers (within the 30-minute budget), then score
   the test split, spoken by the fifth speaker, whom training never heard. Target: WER <= 3 %. The best
   checkpoint is decoded with each search.ctc_weight in DECODINGS on validation and test; the decoding
   is chosen on validation alone, and the test figure of that choice is the headline.
2. asr-vctk: the same settings trained twice, with joint CTC (train.ctc_weight = --ctc, 0.5) and without (0),
   for the same time; validation CER/WER after every `--eval-every` updates, as one table, to show which
   learns faster; then each run's best checkpoint scored on the validation part with beam search.

    S2S_DATA_DIR=../shared/data python bench/asr.py                 # everything (~90 min on 2 cores)
    S2S_DATA_DIR=../shared/data python bench/asr.py --only digits   # one part
    S2S_DATA_DIR=../shared/data python bench/asr.py --minutes 1 --digits-minutes 1   # a smoke run
    S2S_DATA_DIR=../shared/data python bench/asr.py --decode RUN   # only the decoding table of a trained run
    S2S_DATA_DIR=../shared/data python bench/asr.py --only voices --voices 1,2,3,4   # ~15 min per point

Writes runs under --out (default runs/bench-asr)/<timestamp>/ and the closing note `asr.md` there.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines import workflows  # noqa: E402
from pipelines.runs import Run, data_root  # noqa: E402
from plugins.asr.digits import scan_clips  # noqa: E402

FSDD = "asr/fsdd/recordings"
TEST_SPEAKER = "nicolas"   # the registered build's unseen speaker (seed 0)


def train_and_score(name: str, out: Path, minutes: float, overrides: list[str], split_note: str) -> dict:
    started = time.perf_counter()
    run, progress = workflows.train(name, overrides, out, max_minutes=minutes, show_progress=False, log=print)
    wall = time.perf_counter() - started
    _, _, result, _ = workflows.evaluate(run.folder)
    curve = [json.loads(l) for l in (run.folder / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return {"name": name, "folder": str(run.folder), "overrides": overrides, "steps": progress.step,
            "train_minutes": progress.elapsed / 60, "wall_minutes": wall / 60, "stopped": progress.stopped,
            "score": result, "curve": curve, "split": split_note}


DECODINGS = (0.0, 0.3, 0.5, 0.7, 1.0)   # search.ctc_weight: attention only ... CTC head alone


def decoding_table(folder: Path, weights=DECODINGS) -> list[dict]:
    """Validation and test WER/CER of a run's best checkpoint for each search.ctc_weight (0 = the attention
    decoder's beam search alone, 1 = the CTC head's greedy best path, between = the attention n-best plus
    that path rescored jointly; see pipelines/inference.py). Runs without a CTC head get only 0."""
    run = Run.open(folder)
    if getattr(run.model, "ctc", None) is None:
        weights = (0.0,)
    rows = []
    for weight in weights:
        row = {"ctc_weight": weight}
        for split in ("validation", "test"):
            _, _, result, _ = workflows.evaluate(folder, f"{split}={run.settings['data'][split]}",
                                                 search=[f"search.ctc_weight={weight}"])
            row[split] = result
        rows.append(row)
    return rows


def digits_section(args) -> list[str]:
    overrides = [f"train.threads={args.threads}"] + args.set
    r = train_and_score("asr-digits", args.out / "digits", args.digits_minutes, overrides, "test (unseen speaker)")
    s = r["score"]
    rows = decoding_table(Path(r["folder"]))
    chosen = min(rows, key=lambda row: (row["validation"]["wer"], -row["ctc_weight"]))   # picked on validation only
    verdict = "met" if chosen["test"]["wer"] <= 3.0 else "NOT met"
    return ["## asr-digits: connected digits, unseen test speaker", "",
            f"Run: `{r['folder']}` ({r['steps']} updates, {r['train_minutes']:.1f} min of training, "
            f"{r['wall_minutes']:.1f} min wall clock including data building and validation; {r['stopped']}).", "",
            f"Registered decoding (search.ctc_weight = {s['search']['ctc_weight']}, beam {s['beam']}) on the "
            f"{r['split']}: WER {s['wer']:.2f} %, CER {s['cer']:.2f} % ({s['examples']} utterances).", "",
            "Each decoding (search.ctc_weight) of the best checkpoint; the choice is made on validation alone:", "",
            "| search.ctc_weight | validation WER % | validation CER % | test WER % | test CER % |",
            "|---|---|---|---|---|",
            *[f"| {row['ctc_weight']}{' (chosen)' if row is chosen else ''} | {row['validation']['wer']:.2f} | "
              f"{row['validation']['cer']:.2f} | {row['test']['wer']:.2f} | {row['test']['cer']:.2f} |" for row in rows], "",
            f"Target WER <= 3 % on the unseen speaker within 30 minutes: **{verdict}** "
            f"(test WER {chosen['test']['wer']:.2f} % with the decoding chosen on validation).", ""]


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


def voices_section(args) -> list[str]:
    """Train on the first k training speakers' clips (a folder of links per k) and score every run on the
    registered build's test split, so the points differ only in the voices heard."""
    clips = scan_clips(data_root() / FSDD)
    speakers = sorted({c.speaker for c in clips} - {TEST_SPEAKER})
    lines = ["## asr-digits: unseen-speaker WER against the number of training voices", "",
             f"Each run: {args.voices_minutes:g} min of training on the first k of {', '.join(speakers)} "
             f"(validation from their takes 0-4); test: the registered build's {TEST_SPEAKER} split.", "",
             "| voices | speakers | updates | seen-voice validation WER % | unseen test WER % | test CER % |",
             "|---|---|---|---|---|---|"]
    for k in args.voices:
        folder = args.out / f"voices{k}"
        source = folder / "clips"
        source.mkdir(parents=True, exist_ok=True)
        heard = set(speakers[:k]) | {TEST_SPEAKER}
        for clip in clips:
            if clip.speaker in heard:
                os.symlink(clip.path.resolve(), source / clip.path.name)
        spec = f"digits:{source.resolve()}"
        overrides = [f"data.train={spec}", f"data.validation={spec}", f"data.test={spec}",
                     f"data.digits_test_speaker={TEST_SPEAKER}", f"train.threads={args.threads}"] + args.set
        run, progress = workflows.train("asr-digits", overrides, folder / "run", max_minutes=args.voices_minutes,
                                        show_progress=False, log=print)
        _, _, valid, _ = workflows.evaluate(run.folder, f"validation={spec}")
        _, _, test, _ = workflows.evaluate(run.folder, f"test=digits:{FSDD}")
        lines.append(f"| {k} | {', '.join(speakers[:k])} | {progress.step} | {valid['wer']:.2f} | "
                     f"{test['wer']:.2f} | {test['cer']:.2f} |")
        print(lines[-1], flush=True)
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["digits", "vctk", "voices"], help="run one part (voices runs only when named here)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-asr"))
    parser.add_argument("--digits-minutes", type=float, default=28.0, help="asr-digits training budget")
    parser.add_argument("--minutes", type=float, default=25.0, help="asr-vctk training budget per run")
    parser.add_argument("--eval-every", type=int, default=100, help="asr-vctk: validate every N updates")
    parser.add_argument("--ctc", type=float, default=0.5, help="asr-vctk: the CTC weight compared with 0")
    parser.add_argument("--voices", type=lambda text: [int(k) for k in text.split(",")], default=[1, 2, 3, 4],
                        help="voices part: numbers of training speakers, comma-separated")
    parser.add_argument("--voices-minutes", type=float, default=15.0, help="voices part: training budget per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for every run")
    parser.add_argument("--decode", type=Path, metavar="RUN", help="only print the decoding table of a trained asr-digits run")
    args = parser.parse_args()
    if args.decode:
        for row in decoding_table(args.decode):
            v, t = row["validation"], row["test"]
            print(f"search.ctc_weight={row['ctc_weight']}: validation WER {v['wer']:.2f} CER {v['cer']:.2f} | "
                  f"test WER {t['wer']:.2f} CER {t['cer']:.2f}", flush=True)
        return
    args.out = args.out / time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# Speech recognition benchmark (issue 5)", "",
             f"Command: `python bench/asr.py {' '.join(sys.argv[1:])}`; torch threads {args.threads}.", ""]
    if args.only in (None, "digits"):
        lines += digits_section(args)
    if args.only in (None, "vctk"):
        lines += vctk_section(args)
    if args.only == "voices":
        lines += voices_section(args)
    note = args.out / "asr.md"
    note.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print(f"written: {note}")


if __name__ == "__main__":
    main()
