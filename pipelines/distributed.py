"""Data-parallel training on torch.distributed: process-group set-up, batch sharding, reductions.

Every rank builds the same global batch plan from the seed; update i of rank r uses
plan[i * world + r], so ranks see distinct batches and the global order is the same for
any world size. `torchrun` (or `s2s train --nproc N`, which calls it) sets RANK and
WORLD_SIZE; without them everything here is a no-op for a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as dist

from .errors import UserError

T = TypeVar("T")
TIMEOUT = timedelta(seconds=int(os.environ.get("S2S_DIST_TIMEOUT", "120")))


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


def setup() -> World:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPUs); a single process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


def check_nproc(nproc: int) -> None:
    """A clear error before launching more processes than there are devices (GPUs, else CPU cores)."""
    available = torch.cuda.device_count() if torch.cuda.is_available() else (os.cpu_count() or 1)
    kind = "GPUs" if torch.cuda.is_available() else "CPU cores"
    if nproc < 1 or nproc > available:
        raise UserError(f"--nproc {nproc}: this machine has {available} {kind}; use --nproc 1 to {available}")


def shard(plan: Sequence[T], world: World) -> list[T]:
    """This rank's batches: every world-th one, cut so all ranks take the same number of updates."""
    usable = len(plan) - len(plan) % world.size
    return list(plan[world.rank:usable:world.size])


def total(value: float, world: World) -> float:
    """The sum of a number over all ranks."""
    if not world.active:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor)


def gather(items: list[Any], world: World) -> list[Any]:
    """Every rank's list, concatenated in rank order, on every rank."""
    if not world.active:
        return items
    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def broadcast(value: T, world: World) -> T:
    """Rank 0's value, on every rank (decisions such as early stopping are made once)."""
    if not world.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
