"""Where and in what precision the model runs: device choice, autocast, the fp16 gradient scaler.

`train.device = auto` takes the GPU when there is one. `train.precision` is fp32 unless asked:
at the sizes of the shipped pipelines a GPU step is bound by kernel launches, not arithmetic,
and autocast's extra cast kernels made bf16 slower than fp32 on an H100 (bench/gpu.py). bf16
still halves activation memory; fp16 needs a gradient scaler (its range is too small for raw
gradients), bf16 does not. On a CPU with native bf16 matrix units (AVX512-BF16 or AMX) the
opposite holds: bf16 products run about 3.5x the fp32 rate and the output layer dominates an
update, so `precision = auto` picks bf16 there (bench/translation.py) and fp32 everywhere else.
CPU bf16 products run through oneDNN, which keeps a compiled kernel for every distinct matrix
shape in two caches (ideep's and oneDNN's, 1024 entries each by default); batches of varying
length make new shapes all the time, so a bf16 run grew to 1.5x the peak memory of fp32.
Bounding both caches at 64 entries keeps it level with fp32 at the same speed (bench figures
in the README).
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Any, ContextManager

import torch

from .errors import UserError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(setting: str, local_rank: int = 0) -> torch.device:
    """`auto`, `cpu` or `cuda` -> a device; with several processes on a node, GPU `local_rank`."""
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("train.device = cuda but torch sees no GPU; use train.device = auto or cpu")
    return torch.device("cuda", local_rank)


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware; without it bf16 is emulated and slower than fp32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def pick_precision(setting: str, device: torch.device) -> str:
    """The precision to run in: `auto` resolved for this machine; fp16 only on a GPU."""
    if setting == "auto":
        return "bf16" if device.type == "cpu" and native_cpu_bf16() else "fp32"
    if setting == "fp16" and device.type != "cuda":
        raise UserError("train.precision = fp16 needs a GPU (its gradient scaler is CUDA-only); "
                        "use bf16 or fp32 on the CPU")
    return setting


KERNEL_CACHE_ENTRIES = "64"
KERNEL_CACHE_VARIABLES = ("LRU_CACHE_CAPACITY", "ONEDNN_PRIMITIVE_CACHE_CAPACITY")


def bound_cpu_kernel_caches() -> None:
    """Cap oneDNN's per-shape kernel caches before the first bf16 product reads the setting; a
    user's own values win."""
    for name in KERNEL_CACHE_VARIABLES:
        os.environ.setdefault(name, KERNEL_CACHE_ENTRIES)


def autocast(device: torch.device, precision: str) -> ContextManager[Any]:
    """Mixed precision for the forward pass and loss (weights and optimizer stay fp32)."""
    if precision == "fp32":
        return nullcontext()
    if device.type == "cpu":
        bound_cpu_kernel_caches()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A real scaler for fp16; a disabled one (a no-op) otherwise, so the update code has one path."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Batch tensors on the model's device; `lengths` stays on the CPU, where packing wants it."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) and k != "lengths" else v
            for k, v in batch.items()}


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
