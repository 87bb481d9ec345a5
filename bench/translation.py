"""Speed, memory and decoding benchmark for Multi30k de->en, with baselines measured in the same run.

Phases (each in its own process, so peak memory is the phase's own):
  matmul   the machine's fp32 matrix-multiply rate (the GFLOP/s ceiling)
  train    target tokens/s and achieved GFLOP/s for the peers' model shape
           (biLSTM 2x128, LSTM 256, general attention, input feeding, emb 256, dropout 0.3,
           BPE 8k joint, ~64-sentence batches, Adam 1e-3) in fp32, the same in bf16 autocast
           (fp32 weights and optimizer, as train.precision = bf16), and the same shape without
           input feeding (our parallel teacher-forcing path); peak RSS
  decode   greedy and beam-5 sentences/s on test_2016_flickr, batched, against a
           one-sentence-at-a-time beam search of the same model
  peer     (with --peer) OpenNMT-py trained for the same seconds through ../shared/peers: its
           logged tokens/s and peak RSS (with --peer-venv, on a torch build of one's choice, e.g.
           s2s's own); without --peer, the peers' recorded figures are shown, marked as such

Usage: python bench/translation.py [--train-seconds 120] [--run RUN_FOR_DECODING] [--one-at-a-time N]
                                  [--peer [--peer-venv VENV]] [--out FILE]
Prints a table and writes JSON (default bench/results/translation.json).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PEER_SHAPE = ["model.cell=lstm", "model.embedding=256", "model.hidden=256", "model.bidirectional=true",
              "model.layers=1", "model.bridge=last", "model.attention=general", "model.dropout=0.3",
              "data.vocab_size=8000", "data.joint_vocab=true", "train.batch_tokens=1100", "train.lr=0.001",
              "train.label_smoothing=0.0", "train.clip_norm=5.0"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- phases (run in child processes) --------------------------------------------------------------

def phase_matmul(seconds: float = 3.0) -> dict:
    import torch
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        reps += 1
    elapsed = time.perf_counter() - start
    return {"gflops": 2 * n ** 3 * reps / elapsed / 1e9, "threads": torch.get_num_threads()}


def training_flops(model: dict, vocab: int, batch: dict) -> float:
    """Forward+backward FLOPs of one batch, counted from the shapes (backward = 2 x forward)."""
    E, H, O = model["embedding"], model["hidden"], (model["embedding"] if model["tie_embeddings"] else model["hidden"])
    h_enc = H // 2 if model["bidirectional"] else H
    dirs = 2 if model["bidirectional"] else 1
    src_tokens = int(batch["lengths"].sum())
    B, T = batch["target_in"].shape
    S = batch["source"].shape[1]
    enc = src_tokens * dirs * 2 * 4 * h_enc * (E + h_enc)
    rnn_in = E + (O if model["input_feeding"] else 0) + (H if model["context"] != "init" else 0)
    dec = B * T * 2 * 4 * H * (rnn_in + H)
    att = B * T * (2 * H * H + 4 * S * H) if model["attention"] != "none" else 0
    out = B * T * (2 * 2 * H * O + 2 * O * vocab)
    return 3.0 * (enc + dec + att + out)


def phase_train(seconds: float, overrides: list[str], keep: str | None) -> dict:
    import torch
    from pipelines.batching import plan_batches
    from pipelines.examples import encode_split, make_batch
    from pipelines.registry import get_task_class
    from pipelines.runs import Run, data_root
    from pipelines.training import Trainer
    from pipelines.workflows import resolve_pipeline

    settings = resolve_pipeline("translate-de-en", overrides)
    task = get_task_class("translation")(settings, data_root())
    train = task.load(settings["data"]["train"], "train")
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="s2s-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    run = Run.create(settings, folder, train)
    run.place()   # train.device and train.precision, as `s2s train` does
    split, _ = encode_split(train, run.source, run.target, "train", settings["data"]["max_length"])
    trainer = Trainer(run, split, split, show_progress=False)
    plan = plan_batches(split.source_lengths, split.target_lengths, settings["train"]["batch_tokens"], 1, 0)
    tokens = flops = 0.0
    steps, warmup, start = 0, 5, None
    for index in plan:
        batch = make_batch(split, index, run.source, run.target)
        if steps == warmup:
            start, tokens, flops = time.perf_counter(), 0.0, 0.0
        _, count = trainer._update([batch])
        tokens += count
        flops += training_flops(settings["model"], run.target.size, batch)
        steps += 1
        if start is not None and time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    if keep:
        trainer.save("best")
    return {"tokens_per_s": tokens / elapsed, "gflops": flops / elapsed / 1e9, "steps": steps - warmup,
            "sentences_per_batch": len(split) / len(plan), "seconds": elapsed, "threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in run.model.parameters()), "peak_rss_mb": peak_rss_mb()}


def phase_decode(run_dir: str, one_at_a_time: int) -> dict:
    import torch
    from pipelines.inference import predict_items
    from pipelines.runs import Run

    run = Run.open(Path(run_dir))
    test = run.task.load(run.settings["data"]["test"], "test")
    sources = run.source.encode(list(test["source"]))
    result = {}
    for name, beam, items, batch in (("greedy", 1, sources, 64), ("beam5", 5, sources, 64),
                                     ("beam5_one_at_a_time", 5, sources[:one_at_a_time], 1)):
        run.settings["search"]["batch_size"] = batch
        start = time.perf_counter()
        predictions = predict_items(run, items, beam=beam, n_best=1)
        elapsed = time.perf_counter() - start
        result[name] = {"sentences": len(items), "seconds": elapsed, "sentences_per_s": len(items) / elapsed}
        if len(items) == len(sources):
            result[name]["bleu"] = run.task.score([p.text for p in predictions], [[t] for t in test["target"]]).values["bleu"]
    result["peak_rss_mb"] = peak_rss_mb()
    result["threads"] = torch.get_num_threads()
    return result


def phase_peer(seconds: float, out: Path, venv: Path | None) -> dict:
    """OpenNMT-py through ../shared/peers, trained for `seconds`: its logged tokens/s and its peak RSS.

    `venv`: an environment with OpenNMT-py installed (PEER_VENV of the peers' scripts), e.g. one on the
    same torch build as s2s, so the memory and speed ratios compare toolkits, not torch builds. Without
    it the peers' own venv (torch 2.2.2) is installed on first use. Decoding figures stay the recorded ones."""
    env = {**os.environ, "TRAIN_BUDGET_S": str(int(seconds)), "RESULTS_DIR": str(out / "peers"),
           "PEER_ROOT": os.environ.get("PEER_ROOT", str(Path(tempfile.gettempdir()) / "peers"))}
    script = SHARED / "peers" / "opennmt" / "run.sh"
    venv = venv or Path(env["PEER_ROOT"]) / "venv-opennmt"
    env["PEER_VENV"] = str(venv)
    if not (venv / "bin" / "onmt_train").exists():
        subprocess.run(["bash", str(script), "setup"], env=env, check=True)
    subprocess.run(["bash", str(script), "train"], env=env, check=True)
    results = out / "peers" / "opennmt"
    stats = json.loads((results / "train_stats.json").read_text())
    rss_kb = next(int(line.split(":")[1]) for line in (results / "train.time").read_text().splitlines()
                  if "Maximum resident set size" in line)
    torch_version = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
    recorded = recorded_peer()
    return {"tokens_per_s": stats.get("trg_tok_per_s_log_median") or stats["trg_tok_per_s_end_to_end"],
            "end_to_end_tokens_per_s": stats["trg_tok_per_s_end_to_end"], "peak_rss_mb": rss_kb / 1024,
            "torch": torch_version, "greedy_sentences_per_s": recorded["greedy_sentences_per_s"],
            "beam5_sentences_per_s": recorded["beam5_sentences_per_s"],
            "measured": f"training in this run (OpenNMT-py on torch {torch_version}); decoding recorded 2026-11-22"}


def recorded_peer() -> dict:
    rows = json.loads((SHARED / "peers" / "results" / "summary.json").read_text())
    onmt = next(r for r in rows if r["peer"] == "opennmt")
    return {"tokens_per_s": onmt["train"]["trg_tok_per_s_log_median"],
            "beam5_sentences_per_s": onmt["decode"]["5"]["sent_per_s_peer_timer"],
            "greedy_sentences_per_s": onmt["decode"]["1"]["sent_per_s_peer_timer"],
            "peak_rss_mb": onmt["train_peak_rss_mb"], "measured": "recorded 2026-11-22 (shared/peers), not this run"}


# -- driver ----------------------------------------------------------------------------------------

def child(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.setdefault("S2S_DATA_DIR", str(SHARED / "data"))
    proc = subprocess.run([sys.executable, __file__, "--phase", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"phase {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-seconds", type=float, default=120.0)
    parser.add_argument("--run", help="trained run folder to decode with (default: the model the train phase made)")
    parser.add_argument("--one-at-a-time", type=int, default=100, help="sentences for the one-at-a-time beam baseline")
    parser.add_argument("--peer", action="store_true", help="also train OpenNMT-py for --train-seconds, side by side")
    parser.add_argument("--peer-venv", type=Path, help="with --peer: a venv holding OpenNMT-py (e.g. on s2s's torch)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "translation.json")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        if name == "matmul":
            result = phase_matmul()
        elif name == "train":
            result = phase_train(float(rest[0]), json.loads(rest[1]), rest[2] if len(rest) > 2 else None)
        else:
            result = phase_decode(rest[0], int(rest[1]))
        print(json.dumps(result))
        return

    args.out = args.out.resolve()   # the peers' scripts run in their own folder
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="s2s-bench-"))
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count()}
    report["matmul"] = child(["matmul"])
    report["train_peer_shape"] = child(["train", str(args.train_seconds),
                                        json.dumps(PEER_SHAPE + ["model.input_feeding=true"]), str(work / "run")])
    report["train_peer_shape_bf16"] = child(["train", str(args.train_seconds),
                                             json.dumps(PEER_SHAPE + ["model.input_feeding=true", "train.precision=bf16"])])
    report["train_no_input_feeding"] = child(["train", str(args.train_seconds),
                                              json.dumps(PEER_SHAPE + ["model.input_feeding=false"])])
    report["decode"] = child(["decode", args.run or str(work / "run"), str(args.one_at_a_time)])
    report["decode"]["model"] = args.run or "the briefly trained train-phase model (output lengths differ from a trained one)"
    report["peer"] = phase_peer(args.train_seconds, args.out.parent, args.peer_venv) if args.peer else recorded_peer()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwritten: {args.out}")


def print_table(r: dict) -> None:
    mm, feed, fast, dec, peer = r["matmul"]["gflops"], r["train_peer_shape"], r["train_no_input_feeding"], r["decode"], r["peer"]
    bf16 = r["train_peer_shape_bf16"]
    rows = [
        ("matmul fp32 GFLOP/s (ceiling)", f"{mm:.1f}", "", ""),
        ("train tok/s, peers' shape (input feeding)", f"{feed['tokens_per_s']:.0f}", f"OpenNMT-py {peer['tokens_per_s']:.0f}",
         f"{feed['tokens_per_s'] / peer['tokens_per_s']:.2f}x"),
        ("train tok/s, peers' shape, bf16 autocast", f"{bf16['tokens_per_s']:.0f}", f"OpenNMT-py {peer['tokens_per_s']:.0f}",
         f"{bf16['tokens_per_s'] / peer['tokens_per_s']:.2f}x"),
        ("train tok/s, same shape, no input feeding", f"{fast['tokens_per_s']:.0f}", f"OpenNMT-py {peer['tokens_per_s']:.0f}",
         f"{fast['tokens_per_s'] / peer['tokens_per_s']:.2f}x"),
        ("achieved GFLOP/s, peers' shape", f"{feed['gflops']:.1f}", f"matmul {mm:.1f}", f"{feed['gflops'] / mm:.1%}"),
        ("achieved GFLOP/s, no input feeding", f"{fast['gflops']:.1f}", f"matmul {mm:.1f}", f"{fast['gflops'] / mm:.1%}"),
        ("greedy decode sent/s (batched)", f"{dec['greedy']['sentences_per_s']:.1f}",
         f"OpenNMT-py {peer.get('greedy_sentences_per_s', float('nan')):.1f}",
         f"{dec['greedy']['sentences_per_s'] / peer.get('greedy_sentences_per_s', float('nan')):.2f}x"),
        ("beam-5 decode sent/s (batched)", f"{dec['beam5']['sentences_per_s']:.1f}",
         f"one-at-a-time {dec['beam5_one_at_a_time']['sentences_per_s']:.1f}",
         f"{dec['beam5']['sentences_per_s'] / dec['beam5_one_at_a_time']['sentences_per_s']:.2f}x"),
        ("beam-5 decode sent/s vs OpenNMT-py", f"{dec['beam5']['sentences_per_s']:.1f}",
         f"OpenNMT-py {peer.get('beam5_sentences_per_s', float('nan')):.1f}",
         f"{dec['beam5']['sentences_per_s'] / peer.get('beam5_sentences_per_s', float('nan')):.2f}x"),
        ("peak RSS MB, training (peers' shape)", f"{feed['peak_rss_mb']:.0f}", f"OpenNMT-py {peer.get('peak_rss_mb', float('nan')):.0f}",
         f"{feed['peak_rss_mb'] / peer.get('peak_rss_mb', float('nan')):.2f}x"),
        ("peak RSS MB, training, bf16 autocast", f"{bf16['peak_rss_mb']:.0f}", f"OpenNMT-py {peer.get('peak_rss_mb', float('nan')):.0f}",
         f"{bf16['peak_rss_mb'] / peer.get('peak_rss_mb', float('nan')):.2f}x"),
    ]
    width = max(len(x[0]) for x in rows)
    print(f"{'measure':<{width}}  {'s2s':>10}  {'baseline':>22}  ratio")
    for name, ours, base, ratio in rows:
        print(f"{name:<{width}}  {ours:>10}  {base:>22}  {ratio}")
    print(f"peer figures: {peer['measured']}; threads: {feed['threads']}; "
          f"~{feed['sentences_per_batch']:.0f} sentences per batch; parameters {feed['parameters'] / 1e6:.2f} M")


if __name__ == "__main__":
    main()
