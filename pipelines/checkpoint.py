"""Checkpoints: one safetensors file holding weights, optimizer tensors, RNG states and a JSON training state.

Loading never unpickles code. Writing goes to a temporary file that is fsynced and
then renamed over the old one, so a kill at any moment leaves the previous
checkpoint whole. Data-parallel runs keep every rank's RNG states (their dropout
masks differ), so a resumed run with the same number of processes is exact.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import UserError


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim/{index}/{key}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars[f"{index}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def rng_states() -> dict[str, Any]:
    """This process's random states: torch CPU, torch CUDA (when used) and Python's."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: dict[str, Any], ranks_rng: list[dict[str, Any]] | None = None,
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write atomically: tmp file, fsync, rename, fsync the folder. `ranks_rng`: each rank's `rng_states()`;
    `extra`: more named tensors (the weight average)."""
    tensors = {f"model/{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    tensors.update(extra or {})
    meta: dict[str, Any] = {"state": state}
    if optimizer is not None:
        optim_tensors, meta["optimizer"] = _optimizer_tensors(optimizer)
        tensors.update(optim_tensors)
        meta["rng_python"] = []
        for rank, states in enumerate(ranks_rng or [rng_states()]):
            tensors[f"rng/torch/{rank}"] = states["torch"]
            if "cuda" in states:
                tensors[f"rng/cuda/{rank}"] = states["cuda"]
            meta["rng_python"].append(states["python"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"s2s": json.dumps(meta)})
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found; train first (s2s train) or pass the run folder")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads(handle.metadata()["s2s"])
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except Exception as err:
        raise UserError(f"{path}: unreadable checkpoint ({err}); use the run's other checkpoint (best/last)") from None
    return tensors, meta


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})


def restore_training(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                     rank: int = 0) -> bool:
    """Optimizer moments and step counts, and rank `rank`'s RNG states, exactly as they were saved.

    Returns False when the checkpoint holds no RNG state for that rank (it was written by fewer
    processes): the caller then seeds that rank afresh, and the resumed run is no longer exact.
    """
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer"]["scalars"].items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    if f"rng/torch/{rank}" not in tensors:
        return False
    torch.set_rng_state(tensors[f"rng/torch/{rank}"])
    if f"rng/cuda/{rank}" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors[f"rng/cuda/{rank}"])
    version, internal, gauss = meta["rng_python"][rank]
    random.setstate((version, tuple(internal), gauss))
    return True
