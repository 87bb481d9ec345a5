"""The fixed-context bottleneck, measured: the same pipeline and budget with attention none vs additive,
scored by source length (`s2s report`'s buckets).

Without attention the decoder sees the source only through the bridge's context vector c
(fed at every step here, model.context = both, in both variants so the only difference is
attention); the seeds' claim is that this hurts long sources most.

The real run (Multi30k de-en, 20 minutes each on CPU):
    python bench/attention_study.py --minutes 20
A smoke test of the script (about a minute each):
    python bench/attention_study.py --minutes 1 --beam 1 --set data.max_examples=3000 --set train.threads=1 \
        --set model.hidden=128 --set model.embedding=64 --out runs/attention-study-smoke
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

VARIANTS = {"none": ["model.attention=none"], "additive": ["model.attention=additive"]}


def s2s(*args: str) -> None:
    print("+ s2s " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-c", "from cli import main; main()", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="translate-de-en")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget of each variant")
    parser.add_argument("--beam", type=int, default=0, help="beam for the test scores (0: the pipeline's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for both variants")
    parser.add_argument("--out", type=Path, default=Path("runs/attention-study"))
    args = parser.parse_args()
    common = ["model.context=both", *args.overrides]
    folders = []
    for name, settings in VARIANTS.items():
        folder = args.out / name
        s2s("train", args.pipeline, "--out", str(folder), "--quiet", "--max-minutes", str(args.minutes),
            *[x for s in [*common, *settings] for x in ("--set", s)])
        s2s("evaluate", str(folder), *(["--beam", str(args.beam)] if args.beam else []))
        folders.append(str(folder))
    s2s("report", *folders, "--out", str(args.out / "report"))
    page = (args.out / "report" / "report.md").read_text(encoding="utf-8")
    section = re.search(r"## \S+: \S+ by source length\n(.*?)(?=\n## )", page, re.S)
    print(section.group(1).strip() if section else page)


if __name__ == "__main__":
    main()
