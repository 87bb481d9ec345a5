"""Checkpoints: one safetensors file holding weights, optimizer tensors, RNG state and a JSON training state.

Loading never unpickles code. Writing goes to a temporary file that is fsynced and
then renamed over the old one, so a kill at any moment leaves the previous
checkpoint whole.
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
                tensors[f"optim/{index}/{key}"] = value.detach().clone().contiguous()
            else:
                scalars[f"{index}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: dict[str, Any]) -> None:
    """Write atomically: tmp file, fsync, rename, fsync the folder."""
    tensors = {f"model/{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {"state": state}
    if optimizer is not None:
        optim_tensors, meta["optimizer"] = _optimizer_tensors(optimizer)
        tensors.update(optim_tensors)
        tensors["rng/torch"] = torch.get_rng_state()
        meta["rng_python"] = random.getstate()
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


def restore_training(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Optimizer moments and step counts, and the RNG states, exactly as they were saved."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer"]["scalars"].items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    torch.set_rng_state(tensors["rng/torch"])
    version, internal, gauss = meta["rng_python"]
    random.setstate((version, tuple(internal), gauss))
