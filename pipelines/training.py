"""The training loop: bucketed batches, Adam with a plateau schedule, validation on the task's metric,
early stopping, atomic checkpoints, exact resume, and a clean stop on Ctrl-C or SIGTERM.

With several processes (see distributed.py) the model is wrapped in DistributedDataParallel,
rank 0 alone writes checkpoints, logs and progress, validation is sharded and gathered, and
every stop decision is agreed by all ranks so none waits for a peer that has left.
"""
from __future__ import annotations

import json
import math
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .averaging import WeightAverage
from .batching import plan_batches
from .checkpoint import load_weights, read_checkpoint, restore_training, rng_states, save_checkpoint
from .ctc import joint_loss
from .distributed import World, broadcast, gather, step_batches, total
from .errors import UserError
from . import copy as pointer
from .examples import EncodedSplit, add_copy, make_batch
from .hardware import autocast, grad_scaler, to_device
from .inference import predict_items
from .memory import cap_heap_growth
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
    if torch.cuda.is_available() and torch.cuda.is_initialized() and torch.cuda.max_memory_allocated() > 0:
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


def coverage_loss(weights: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """sum_t sum_i min(a_t,i, cov_t,i) over real target steps; cov_t = the attention of the steps before t."""
    coverage = weights.cumsum(dim=1) - weights
    return (torch.minimum(weights, coverage).sum(-1) * (gold != 0)).sum()


class Trainer:
    def __init__(self, run: Run, train: EncodedSplit, valid: EncodedSplit, show_progress: bool = True,
                 world: World = World()):
        self.run, self.train_data, self.valid_data, self.world = run, train, valid, world
        self.cfg = run.settings["train"]
        self.show_progress = show_progress and world.main
        cap_heap_growth()
        if self.cfg["threads"]:
            torch.set_num_threads(self.cfg["threads"])
        if self.cfg["accumulate"] < 1:
            raise UserError(f"train.accumulate = {self.cfg['accumulate']}: must be 1 or more (batches per update)")
        self.model = run.model
        self.device, self.precision = run.device, run.precision
        self.decoder = getattr(self.model, "decoder", None)
        if getattr(self.decoder, "copy", False):
            add_copy(train, run.source, run.target)
            add_copy(valid, run.source, run.target)
        # With several processes the training forward goes through DDP, which all-reduces gradients
        # bucket by bucket while backward still runs. static_graph: which parameters get gradients is
        # fixed per model, but not all are reached from forward's outputs (a classifier's unused
        # bridge layers, the CTC head applied after forward), and DDP's default mode rejects that.
        self.net: torch.nn.Module = self.model
        if world.active:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids, static_graph=True, forward_sync_buffers=False)
        # fused: one kernel for all parameters instead of a dozen elementwise passes (CPU and CUDA)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg["lr"], fused=True)
        self.scaler = grad_scaler(self.device, self.precision)
        mode = "max" if run.task.higher_is_better else "min"
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode=mode, factor=self.cfg["lr_factor"], patience=self.cfg["lr_patience"],
            min_lr=self.cfg["min_lr"])
        if not 0.0 <= self.cfg["ema"] < 1.0:
            raise UserError(f"train.ema = {self.cfg['ema']}: must be in [0, 1), e.g. 0.999 (0 = off)")
        self.average = WeightAverage(self.model, self.cfg["ema"]) if self.cfg["ema"] else None
        self.progress = Progress()
        self.metrics_log = run.folder / "metrics.jsonl"

    # -- checkpoints -------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"progress": vars(self.progress), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "processes": self.world.size}

    def save(self, name: str) -> None:
        """Every rank hands its RNG states to rank 0, which writes the file (all ranks must call this)."""
        states = gather([rng_states()], self.world)
        if self.world.main:
            average = self.average.tensors() if self.average and name == "last" else None
            save_checkpoint(self.run.checkpoints / f"{name}.safetensors", self.model, self.optimizer, self._state(),
                            [part[0] for part in states], average)

    def resume(self) -> None:
        """Continue exactly where the `last` checkpoint left off (with the same number of processes)."""
        tensors, meta = read_checkpoint(self.run.checkpoints / "last.safetensors")
        load_weights(self.model, tensors)
        if self.average:
            self.average.load(tensors)
        if not restore_training(self.optimizer, tensors, meta, self.world.rank):
            torch.manual_seed(self.cfg["seed"] * 1000 + self.world.rank)
        self.scheduler.load_state_dict(meta["state"]["scheduler"])
        if meta["state"].get("scaler"):
            self.scaler.load_state_dict(meta["state"]["scaler"])
        self.progress = Progress(**meta["state"]["progress"])
        self.progress.stopped = ""
        if self.world.main and self.metrics_log.exists():   # drop validations logged after that checkpoint
            lines = [l for l in self.metrics_log.read_text(encoding="utf-8").splitlines()
                     if l.strip() and json.loads(l)["step"] <= self.progress.step]
            self.metrics_log.write_text("".join(l + "\n" for l in lines), encoding="utf-8")

    # -- one update --------------------------------------------------------------------------
    def _loss(self, net: torch.nn.Module, batch: dict[str, Any], smoothing: float, ratio: float = 1.0) -> torch.Tensor:
        """The summed loss of a batch (task loss, plus CTC and coverage where configured). `net` is the
        DDP wrapper in training and the bare model in validation (where ranks run different batch counts)."""
        if "labels" in batch:
            logits, labels = net(batch["source"], batch["lengths"]), batch["labels"]
            if logits.dim() == 3:   # model.ensemble in training: (B, members, C), each member on its own loss
                logits, labels = logits.flatten(0, 1), labels.repeat_interleave(logits.size(1))
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing, reduction="sum")
            lm = getattr(self.model, "lm", None)
            if lm is not None and self.model.training:   # joint LM loss (train.lm_weight), per example
                lm_loss, lm_tokens = lm.loss()
                loss = loss + self.cfg["lm_weight"] * lm_loss * (batch["labels"].numel() / max(lm_tokens, 1))
            return loss
        loss, weights = net(batch["source"], batch["lengths"], batch["target_in"], ratio,
                            gold=batch["target_out"], smoothing=smoothing, **pointer.model_inputs(batch))
        loss = self._with_ctc(loss, batch["target_out"])
        if getattr(self.decoder, "coverage", False) and self.model.training:   # the logged train loss includes it
            loss = loss + self.cfg["coverage_weight"] * coverage_loss(weights, batch["target_out"])
        return loss

    def _update(self, batches: list[dict[str, Any]]) -> tuple[torch.Tensor, int]:
        """One optimizer step over this rank's micro-batches. The loss is normalised by the target tokens
        of the whole update (all micro-batches of all ranks), so N processes, or one process accumulating
        N batches, make the same step. Returns the summed loss (a tensor: no GPU sync) and the global tokens."""
        self.model.train()
        ratio = teacher_forcing_ratio(self.cfg["schedule"], self.cfg["teacher_forcing"], self.progress.step,
                                      self.cfg["schedule_k"], self.cfg["min_teacher_forcing"])
        tokens = int(total([sum(b["tokens"] for b in batches)], self.world)[0])
        scale = self.world.size / max(tokens, 1)   # DDP averages gradients over the ranks
        self.optimizer.zero_grad(set_to_none=True)
        summed = torch.zeros((), device=self.device)
        for batch in batches:   # DDP's static graph cannot skip syncs (no_sync), so each micro-batch all-reduces
            with autocast(self.device, self.precision):
                loss = self._loss(self.net, to_device(batch, self.device), self.cfg["label_smoothing"], ratio)
            self.scaler.scale(loss * scale).backward()
            summed += loss.detach().float()
        if self.cfg["clip_norm"] > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["clip_norm"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return summed, tokens

    def _with_ctc(self, loss: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """Hybrid CTC/attention: (1 - w) * loss + w * CTC of the batch the encoder just ran (see ctc.py)."""
        head = getattr(self.model, "ctc", None)
        if head is None:
            return loss
        return joint_loss(loss, head.loss(gold, TextVocab.eos_id), self.cfg["ctc_weight"])

    # -- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def validation_loss(self) -> float:
        """Per-token loss over the validation split; each rank takes every world-th batch."""
        self.model.eval()
        plan = plan_batches(self.valid_data.source_lengths, self.valid_data.target_lengths,
                            self.cfg["batch_tokens"], 0, 0, shuffle=False)
        summed, count = torch.zeros((), device=self.device, dtype=torch.float64), 0
        for index in plan[self.world.rank::self.world.size]:
            batch = make_batch(self.valid_data, index, self.run.source, self.run.target)
            with autocast(self.device, self.precision):
                summed += self._loss(self.model, to_device(batch, self.device), 0.0).double()
            count += batch["tokens"]
        summed, count = total([float(summed), count], self.world)
        return summed / max(count, 1)

    def validation_outputs(self) -> list[str]:
        """Greedy outputs for the validation split in its order; each rank decodes every world-th example."""
        n, rank, size = len(self.valid_data), self.world.rank, self.world.size
        mine = range(rank, n, size)
        predictions = predict_items(self.run, [self.valid_data.sources[i] for i in mine], beam=1, n_best=1,
                                    raw_sources=[self.valid_data.raw_sources[i] for i in mine])
        outputs = [""] * n
        for r, part in enumerate(gather([p.text for p in predictions], self.world)):
            outputs[r::size] = part
        return outputs

    def validate(self, train_loss: float) -> dict[str, Any]:
        """Loss and the task's metrics on the validation split; LR schedule, best checkpoint, early stopping.
        With several processes the ranks' results are combined, and rank 0's metric decides for all.
        With `train.ema` the averaged weights are the ones validated and saved as `best`."""
        with self.average.applied() if self.average else nullcontext():
            return self._validate(train_loss)

    def _validate(self, train_loss: float) -> dict[str, Any]:
        rng = torch.get_rng_state()
        started = time.perf_counter()
        loss = self.validation_loss()
        scores = self.run.task.score(self.validation_outputs(), self.valid_data.references)
        torch.set_rng_state(rng)
        metric = broadcast(scores.values[scores.primary], self.world)
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
        p.elapsed = broadcast(p.elapsed, self.world)
        record["elapsed"] = round(p.elapsed, 2)
        if self.world.main:
            with open(self.metrics_log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        if better:
            self.save("best")
        if p.bad_evals >= self.cfg["patience"]:
            p.stopped = f"early stopping: no improvement in {p.bad_evals} validations"
        return record

    # -- the loop ----------------------------------------------------------------------------
    def _plan(self, epoch: int) -> list[list[int]]:
        data, cfg = self.train_data, self.cfg
        plan = plan_batches(data.source_lengths, data.target_lengths, cfg["batch_tokens"], cfg["seed"], epoch)
        group = self.world.size * cfg["accumulate"]
        if len(plan) < group:
            raise UserError(f"the training data makes {len(plan)} batches per epoch, fewer than one update needs "
                            f"({self.world.size} processes x train.accumulate {cfg['accumulate']}); "
                            f"lower train.batch_tokens, train.accumulate or the number of processes")
        return plan

    def fit(self, max_minutes: float = 0.0) -> Progress:
        cfg, p, world = self.cfg, self.progress, self.world
        budget = 60.0 * (max_minutes or cfg["max_minutes"])
        group = world.size * cfg["accumulate"]   # batches per update, over all ranks
        plan = self._plan(p.epoch)
        total_steps = cfg["max_steps"] or cfg["max_epochs"] * (len(plan) // group)
        bar = tqdm(total=total_steps, initial=p.step, disable=None if self.show_progress else True, unit="step",
                   dynamic_ncols=True, mininterval=0.5)   # None: drawn on a terminal, silent in logs
        loss_sum, loss_count = torch.zeros((), device=self.device), 0
        window_start, window_tokens, shown = time.perf_counter(), 0, 0.0
        with stop_on_signals() as flag:
            while p.epoch < cfg["max_epochs"] and not p.stopped:
                plan = self._plan(p.epoch)
                updates = len(plan) // group
                while p.batch_in_epoch < updates * group and not p.stopped:
                    started = time.perf_counter()
                    batches = [make_batch(self.train_data, index, self.run.source, self.run.target)
                               for index in step_batches(plan, p.batch_in_epoch, world, cfg["accumulate"])]
                    loss, count = self._update(batches)
                    p.step += 1
                    if self.average:
                        self.average.update(p.step)
                    p.batch_in_epoch += group
                    p.target_tokens += count
                    p.elapsed += time.perf_counter() - started
                    loss_sum, loss_count, window_tokens = loss_sum + loss, loss_count + count, window_tokens + count
                    bar.update(1)
                    if self.show_progress and time.perf_counter() - shown > 1.0:   # reading the loss syncs a GPU
                        shown = time.perf_counter()
                        rate = window_tokens / max(shown - window_start, 1e-9)
                        bar.set_postfix(loss=f"{float(loss) / max(count, 1):.3f}", tok_s=f"{rate:.0f}", epoch=p.epoch,
                                        refresh=False)
                    end_of_epoch = p.batch_in_epoch == updates * group
                    if (cfg["eval_every"] and p.step % cfg["eval_every"] == 0) or (not cfg["eval_every"] and end_of_epoch):
                        record = self.validate(self._train_loss(loss_sum, loss_count))
                        if world.main:
                            bar.write(_describe(record))
                        loss_sum, loss_count = torch.zeros((), device=self.device), 0
                    # every rank must take the same decision: a signal or the budget on any rank stops all
                    signalled, over = total([flag["signal"], float(bool(budget) and p.elapsed >= budget)], world, "max")
                    if cfg["max_steps"] and p.step >= cfg["max_steps"]:
                        p.stopped = f"reached train.max_steps = {cfg['max_steps']}"
                    elif over:
                        p.stopped = f"reached the time budget of {budget / 60:.1f} minutes"
                    if end_of_epoch:
                        p.epoch += 1
                        p.batch_in_epoch = 0
                    if signalled or p.stopped or (cfg["save_every"] and p.step % cfg["save_every"] == 0) or end_of_epoch:
                        self.save("last")
                    if signalled:
                        bar.close()
                        name = signal.Signals(int(signalled)).name
                        processes = f" --nproc {world.size}" if world.active else ""
                        raise UserError(f"stopped by {name} at step {p.step}; checkpoint saved: "
                                        f"resume with `s2s train --resume {self.run.folder}{processes}`")
                    if end_of_epoch:
                        break   # the next epoch gets its own plan (a new shuffle), and max_epochs is checked
            if not p.stopped:
                p.stopped = f"reached train.max_epochs = {cfg['max_epochs']}"
        bar.close()
        if p.validated_step != p.step:   # the updates since the last validation may hold the best model
            record = self.validate(self._train_loss(loss_sum, loss_count))
            if world.main:
                bar.write(_describe(record))
        self.save("last")
        return p

    def _train_loss(self, summed: torch.Tensor, count: int) -> float:
        """Mean training loss per token since the last validation, over all ranks (`count` is already global)."""
        return total([float(summed)], self.world)[0] / max(count, 1)


def _describe(record: dict[str, Any]) -> str:
    primary = record["primary"]
    return (f"step {record['step']} epoch {record['epoch']}: train loss {record['train_loss']:.3f}, "
            f"valid loss {record['valid_loss']:.3f} (ppl {record['valid_ppl']:.2f}), "
            f"valid {primary} {record['valid_' + primary]:.2f}, lr {record['lr']:.2e}")
