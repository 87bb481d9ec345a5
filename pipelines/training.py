"""The training loop: bucketed batches, Adam with a plateau schedule, validation on the task's metric,
early stopping, atomic checkpoints, exact resume, and a clean stop on Ctrl-C or SIGTERM."""
from __future__ import annotations

import json
import math
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .batching import plan_batches
from .checkpoint import load_weights, read_checkpoint, restore_training, save_checkpoint
from .ctc import joint_loss
from .errors import UserError
from . import copy as pointer
from .examples import EncodedSplit, add_copy, make_batch
from .inference import evaluate_split
from .runs import Run
from .schedules import teacher_forcing_ratio
from .tokenization import TextVocab


@dataclass
class Progress:
    """Everything about where training is, saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    elapsed: float = 0.0
    target_tokens: int = 0
    validated_step: int = -1
    stopped: str = ""


def peak_memory_mb() -> float:
    """Peak memory so far, for reports: allocated GPU memory when on CUDA, else the process's peak RSS."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    import resource   # Unix only; ru_maxrss is in KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (2 ** 20 if sys.platform == "darwin" else 1024), 1)


@contextmanager
def stop_on_signals() -> Iterator[dict[str, int]]:
    """SIGINT/SIGTERM set a flag; the loop finishes the current update, saves, and stops."""
    flag = {"signal": 0}
    handler = lambda signum, frame: flag.__setitem__("signal", signum)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def sequence_loss(logits: torch.Tensor, gold: torch.Tensor, smoothing: float, log_probs: bool = False,
                  vocab_size: int = 0) -> tuple[torch.Tensor, int]:
    """Summed token cross-entropy (padding ignored) and the number of tokens.

    With copy (`log_probs`) the model already emits log-probabilities over the batch's extended
    vocabulary: the loss is their NLL, and label smoothing spreads over the `vocab_size` real entries
    only (the temporary ids of other examples' OOVs have no probability to smooth towards).
    """
    if log_probs:
        logp, flat = logits.reshape(-1, logits.size(-1)).float(), gold.reshape(-1)
        nll = -logp.gather(1, flat.unsqueeze(1)).squeeze(1)
        if smoothing:
            nll = (1.0 - smoothing) * nll - smoothing * logp[:, :vocab_size].mean(-1)
        keep = flat != 0
        return nll[keep].sum(), int(keep.sum())
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), gold.reshape(-1), ignore_index=0,
                           label_smoothing=smoothing, reduction="sum")
    return loss, int((gold != 0).sum())


def coverage_loss(weights: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """sum_t sum_i min(a_t,i, cov_t,i) over real target steps; cov_t = the attention of the steps before t."""
    coverage = weights.cumsum(dim=1) - weights
    return (torch.minimum(weights, coverage).sum(-1) * (gold != 0)).sum()


class Trainer:
    def __init__(self, run: Run, train: EncodedSplit, valid: EncodedSplit, show_progress: bool = True):
        self.run, self.train_data, self.valid_data = run, train, valid
        self.cfg = run.settings["train"]
        self.show_progress = show_progress
        if self.cfg["threads"]:
            torch.set_num_threads(self.cfg["threads"])
        self.model = run.model
        self.decoder = getattr(self.model, "decoder", None)
        if getattr(self.decoder, "copy", False):
            add_copy(train, run.source, run.target)
            add_copy(valid, run.source, run.target)
        # fused: one kernel for all parameters instead of a dozen elementwise passes (CPU and CUDA)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg["lr"], fused=True)
        mode = "max" if run.task.higher_is_better else "min"
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode=mode, factor=self.cfg["lr_factor"], patience=self.cfg["lr_patience"],
            min_lr=self.cfg["min_lr"])
        self.progress = Progress()
        self.metrics_log = run.folder / "metrics.jsonl"

    # -- checkpoints -------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"progress": vars(self.progress), "scheduler": self.scheduler.state_dict()}

    def save(self, name: str) -> None:
        save_checkpoint(self.run.checkpoints / f"{name}.safetensors", self.model, self.optimizer, self._state())

    def resume(self) -> None:
        """Continue exactly where the `last` checkpoint left off."""
        tensors, meta = read_checkpoint(self.run.checkpoints / "last.safetensors")
        load_weights(self.model, tensors)
        restore_training(self.optimizer, tensors, meta)
        self.scheduler.load_state_dict(meta["state"]["scheduler"])
        self.progress = Progress(**meta["state"]["progress"])
        self.progress.stopped = ""
        if self.metrics_log.exists():   # drop validations logged after that checkpoint
            lines = [l for l in self.metrics_log.read_text(encoding="utf-8").splitlines()
                     if l.strip() and json.loads(l)["step"] <= self.progress.step]
            self.metrics_log.write_text("".join(l + "\n" for l in lines), encoding="utf-8")

    # -- one update --------------------------------------------------------------------------
    def _update(self, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
        self.model.train()
        smoothing = self.cfg["label_smoothing"]
        if "labels" in batch:
            logits = self.model(batch["source"], batch["lengths"])
            loss = F.cross_entropy(logits.float(), batch["labels"], label_smoothing=smoothing, reduction="sum")
            count = batch["labels"].numel()
        else:
            ratio = teacher_forcing_ratio(self.cfg["schedule"], self.cfg["teacher_forcing"], self.progress.step,
                                          self.cfg["schedule_k"], self.cfg["min_teacher_forcing"])
            logits, weights = self.model(batch["source"], batch["lengths"], batch["target_in"], ratio,
                                         **pointer.model_inputs(batch))
            loss, count = self._sequence_loss(logits, batch["target_out"], smoothing)
            loss = self._with_ctc(loss, batch["target_out"])
            if getattr(self.decoder, "coverage", False):   # the logged train loss includes it
                loss = loss + self.cfg["coverage_weight"] * coverage_loss(weights, batch["target_out"])
        self.optimizer.zero_grad(set_to_none=True)
        (loss / max(count, 1)).backward()
        if self.cfg["clip_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["clip_norm"])
        self.optimizer.step()
        return float(loss.detach()), count

    def _sequence_loss(self, logits: torch.Tensor, gold: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, int]:
        copy = getattr(self.decoder, "copy", False)
        return sequence_loss(logits, gold, smoothing, copy, self.decoder.vocab_size if copy else 0)

    def _with_ctc(self, loss: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """Hybrid CTC/attention: (1 - w) * loss + w * CTC of the batch the encoder just ran (see ctc.py)."""
        head = getattr(self.model, "ctc", None)
        if head is None:
            return loss
        return joint_loss(loss, head.loss(gold, TextVocab.eos_id), self.cfg["ctc_weight"])

    @torch.no_grad()
    def validation_loss(self) -> float:
        self.model.eval()
        total, count = 0.0, 0
        plan = plan_batches(self.valid_data.source_lengths, self.valid_data.target_lengths,
                            self.cfg["batch_tokens"], 0, 0, shuffle=False)
        for index in plan:
            batch = make_batch(self.valid_data, index, self.run.source, self.run.target)
            if "labels" in batch:
                logits = self.model(batch["source"], batch["lengths"])
                total += float(F.cross_entropy(logits.float(), batch["labels"], reduction="sum"))
                count += batch["labels"].numel()
            else:
                logits, _ = self.model(batch["source"], batch["lengths"], batch["target_in"], **pointer.model_inputs(batch))
                loss, n = self._sequence_loss(logits, batch["target_out"], 0.0)
                loss = self._with_ctc(loss, batch["target_out"])
                total, count = total + float(loss), count + n
        return total / max(count, 1)

    def validate(self, train_loss: float) -> dict[str, Any]:
        """Loss and the task's metrics on the validation split; LR schedule, best checkpoint, early stopping."""
        rng = torch.get_rng_state()
        started = time.perf_counter()
        loss = self.validation_loss()
        scores, _ = evaluate_split(self.run, self.valid_data, beam=1)
        torch.set_rng_state(rng)
        metric = scores.values[scores.primary]
        p = self.progress
        p.validated_step = p.step
        better = p.best is None or (metric > p.best if self.run.task.higher_is_better else metric < p.best)
        self.scheduler.step(metric)
        if better:
            p.best, p.best_step, p.bad_evals = metric, p.step, 0
        else:
            p.bad_evals += 1
        record = {"step": p.step, "epoch": p.epoch, "train_loss": train_loss, "valid_loss": loss,
                  "valid_ppl": math.exp(min(loss, 50.0)), **{f"valid_{k}": v for k, v in scores.values.items()},
                  "primary": scores.primary, "lr": self.optimizer.param_groups[0]["lr"],
                  "elapsed": round(p.elapsed, 2), "target_tokens": p.target_tokens,
                  "validation_seconds": round(time.perf_counter() - started, 2), "peak_memory_mb": peak_memory_mb()}
        p.elapsed += time.perf_counter() - started   # the time budget counts validation too
        record["elapsed"] = round(p.elapsed, 2)
        with open(self.metrics_log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if better:
            self.save("best")
        if p.bad_evals >= self.cfg["patience"]:
            p.stopped = f"early stopping: no improvement in {p.bad_evals} validations"
        return record

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, max_minutes: float = 0.0) -> Progress:
        cfg, p = self.cfg, self.progress
        budget = 60.0 * (max_minutes or cfg["max_minutes"])
        data = self.train_data
        plan = plan_batches(data.source_lengths, data.target_lengths, cfg["batch_tokens"], cfg["seed"], p.epoch)
        total = cfg["max_steps"] or cfg["max_epochs"] * len(plan)
        bar = tqdm(total=total, initial=p.step, disable=None if self.show_progress else True, unit="step",
                   dynamic_ncols=True, mininterval=0.5)   # None: drawn on a terminal, silent in logs
        loss_sum, loss_count, window_start, window_tokens = 0.0, 0, time.perf_counter(), 0
        with stop_on_signals() as flag:
            while p.epoch < cfg["max_epochs"] and not p.stopped:
                plan = plan_batches(data.source_lengths, data.target_lengths, cfg["batch_tokens"], cfg["seed"], p.epoch)
                while p.batch_in_epoch < len(plan) and not p.stopped:
                    started = time.perf_counter()
                    batch = make_batch(data, plan[p.batch_in_epoch], self.run.source, self.run.target)
                    loss, count = self._update(batch)
                    p.step += 1
                    p.batch_in_epoch += 1
                    p.target_tokens += count
                    p.elapsed += time.perf_counter() - started
                    loss_sum, loss_count, window_tokens = loss_sum + loss, loss_count + count, window_tokens + count
                    rate = window_tokens / max(time.perf_counter() - window_start, 1e-9)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss / max(count, 1):.3f}", tok_s=f"{rate:.0f}", epoch=p.epoch, refresh=False)
                    end_of_epoch = p.batch_in_epoch == len(plan)
                    if (cfg["eval_every"] and p.step % cfg["eval_every"] == 0) or (not cfg["eval_every"] and end_of_epoch):
                        record = self.validate(loss_sum / max(loss_count, 1))
                        bar.write(_describe(record))
                        loss_sum = loss_count = 0
                    if cfg["max_steps"] and p.step >= cfg["max_steps"]:
                        p.stopped = f"reached train.max_steps = {cfg['max_steps']}"
                    elif budget and p.elapsed >= budget:
                        p.stopped = f"reached the time budget of {budget / 60:.1f} minutes"
                    if end_of_epoch:
                        p.epoch += 1
                        p.batch_in_epoch = 0
                    if flag["signal"] or p.stopped or (cfg["save_every"] and p.step % cfg["save_every"] == 0) or end_of_epoch:
                        self.save("last")
                    if flag["signal"]:
                        bar.close()
                        name = signal.Signals(flag["signal"]).name
                        raise UserError(f"stopped by {name} at step {p.step}; checkpoint saved: "
                                        f"resume with `s2s train --resume {self.run.folder}`")
                    if end_of_epoch:
                        break   # the next epoch gets its own plan (a new shuffle), and max_epochs is checked
            if not p.stopped:
                p.stopped = f"reached train.max_epochs = {cfg['max_epochs']}"
        bar.close()
        if p.validated_step != p.step:   # the updates since the last validation may hold the best model
            bar.write(_describe(self.validate(loss_sum / max(loss_count, 1))))
        self.save("last")
        return p


def _describe(record: dict[str, Any]) -> str:
    primary = record["primary"]
    return (f"step {record['step']} epoch {record['epoch']}: train loss {record['train_loss']:.3f}, "
            f"valid loss {record['valid_loss']:.3f} (ppl {record['valid_ppl']:.2f}), "
            f"valid {primary} {record['valid_' + primary]:.2f}, lr {record['lr']:.2e}")
