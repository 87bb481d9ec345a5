"""Data-parallel training on torch.distributed: process groups, launching, batch sharding, reductions.

Every rank builds the same batch plan from the seed. An update takes `world x accumulate`
consecutive batches of it; rank r takes the r-th group of `accumulate`, so the ranks see
distinct batches and the global order is the same for any number of processes: one
process with `train.accumulate = N` makes exactly the updates of N processes.

`torchrun` (or `s2s train --nproc N`, which starts the workers through torch's elastic
launcher) sets RANK and WORLD_SIZE; without them everything here is a no-op.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

from .errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def launched_size() -> int:
    """The number of processes torchrun (or --nproc) started, 1 when run directly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str, timeout_s: float) -> World:
    """Join the process group the launcher describes: nccl between GPUs, gloo between CPU processes.

    `timeout_s` bounds every collective, so a rank that dies stops the others with an error
    instead of a hang.
    """
    if launched_size() <= 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if gpu:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo", timeout=timedelta(seconds=timeout_s))
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def teardown(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


def check_nproc(nproc: int, device: str) -> None:
    """A clear error before launching more processes than there are devices (GPUs, else CPU cores)."""
    gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    available = torch.cuda.device_count() if gpu else (os.cpu_count() or 1)
    kind = "GPUs" if gpu else "CPU cores"
    if nproc < 1 or nproc > available:
        raise UserError(f"--nproc {nproc}: this machine has {available} {kind}; use --nproc 1 to {available} "
                        f"(or torchrun across several machines, see the README)")


def launched_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def launch(nproc: int, worker: Callable[..., Any], *args: Any) -> None:
    """Run `worker(*args)` in `nproc` local processes with torch's elastic launcher (what torchrun uses).

    When a worker fails the launcher stops the others; the worker has printed its own error, and
    here it becomes one line (the launcher's own tracebacks are silenced).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    for name in list(logging.Logger.manager.loggerDict):   # each of these sets its own level on import
        if name.startswith(("torch.distributed.elastic", "torch.multiprocessing")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id="s2s", rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5, start_method="spawn")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # A killed worker leaves a semaphore behind, and multiprocessing's tracker process (which takes
    # its warning filters from these options) would print a warning about it after our one-line error.
    sys.warnoptions.append("ignore::UserWarning:multiprocessing.resource_tracker")
    try:
        elastic_launch(config, worker)(*args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        raise UserError(f"training process {rank} of {nproc} stopped ({how}) and the others with it") from None
    except SignalException as err:
        raise UserError(f"stopped by {err.sigval.name}") from None


def lost_peers(err: BaseException) -> bool:
    """Whether an exception means another process went away (a failed collective), not a bug here.
    Gloo raises these from inside backward as plain RuntimeErrors, so the message is all there is."""
    if isinstance(err, dist.DistError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(
        mark in text for mark in ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe"))


def step_batches(plan: Sequence[T], start: int, world: World, accumulate: int) -> list[T]:
    """This rank's micro-batches for the update whose first batch is plan[start]."""
    first = start + world.rank * accumulate
    return list(plan[first: first + accumulate])


def updates_in(plan: Sequence[Any], world: World, accumulate: int) -> int:
    """Whole updates in an epoch's plan (a last partial group is dropped, so all ranks take the same number)."""
    return len(plan) // (world.size * accumulate)


def total(values: Sequence[float], world: World, op: str = "sum") -> list[float]:
    """Element-wise sum (or max) over all ranks, in float64 on the CPU (gloo) or the GPU (nccl)."""
    if not world.active:
        return list(values)
    device = torch.device("cuda", world.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor.tolist()


def gather(items: list[Any], world: World) -> list[Any]:
    """Every rank's list, in rank order, on every rank."""
    if not world.active:
        return [items]
    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, items)
    return parts


def broadcast(value: T, world: World) -> T:
    """Rank 0's value on every rank (decisions such as early stopping are made once)."""
    if not world.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()
