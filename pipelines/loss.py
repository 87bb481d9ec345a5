"""Token losses of the decoder: cross-entropy from logits, and the output layer fused with its loss.

The output layer W h + b over the target vocabulary is the largest product of a training step
(on the peers' Multi30k shape its three (tokens x 256 x 4383) products and the log-softmax take
about 40 % of an update on the CPU). Run as separate autograd ops it keeps the (N, V) logits and
their log-softmax, zero-fills an (N, V) gradient for the NLL and runs the log-softmax backward
over it. `output_layer_loss` forms the softmax once, turns it into d loss / d logits in place,
and takes the layer's gradients in the same pass: the same three products, a few in-place
elementwise passes over one (N, V) buffer, and no (N, V) tensor kept for backward. Under bf16
autocast its products run in bf16 and the softmax in fp32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sequence_loss(logits: Tensor, gold: Tensor, smoothing: float, log_probs: bool = False,
                  vocab_size: int = 0) -> tuple[Tensor, int]:
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


def output_layer_loss(x: Tensor, layer: nn.Linear, gold: Tensor, smoothing: float) -> Tensor:
    """Summed cross-entropy of softmax(layer(x)) against `gold` (N,), label-smoothed as
    F.cross_entropy(label_smoothing=...) does; x (N, D) holds real target positions only."""
    if not torch.is_grad_enabled():   # validation: no gradients to take along
        return F.cross_entropy(layer(x).float(), gold, label_smoothing=smoothing, reduction="sum")
    return _OutputLayerLoss.apply(x, layer.weight, layer.bias, gold, smoothing)


class _OutputLayerLoss(torch.autograd.Function):
    """The loss and, already in forward, its gradients for x, W and b; backward only scales them."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, gold: Tensor, smoothing: float) -> Tensor:
        logits = x @ weight.t() if bias is None else torch.addmm(bias, x, weight.t())
        logits = logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits
        shifted = logits.sub_(logits.amax(1, keepdim=True))    # in place: the logits are not needed again
        gold_shifted = shifted.gather(1, gold.unsqueeze(1)).squeeze(1)
        mean_shifted = shifted.mean(1) if smoothing else None
        grad = shifted.exp_()                                  # <= 1 after the shift: no overflow
        norm = grad.sum(1)
        log_norm = norm.log()
        loss = (log_norm - gold_shifted).sum() * (1.0 - smoothing)
        if smoothing:   # -mean_v log p_v = log_norm - mean_v shifted_v
            loss = loss + smoothing * (log_norm - mean_shifted).sum()
        grad.div_(norm.unsqueeze(1))                           # softmax
        grad.scatter_add_(1, gold.unsqueeze(1), grad.new_full((gold.numel(), 1), smoothing - 1.0))
        if smoothing:
            grad.sub_(smoothing / grad.size(1))
        device = x.device.type
        low = grad.to(torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype)  # once
        ctx.has_bias = bias is not None
        ctx.save_for_backward(low @ weight, low.t() @ x, grad.sum(0) if bias is not None else grad.new_empty(0))
        return loss

    @staticmethod
    def backward(ctx, scale: Tensor) -> tuple[Tensor | None, ...]:
        grad_x, grad_w, grad_b = ctx.saved_tensors
        return grad_x * scale, grad_w * scale, (grad_b * scale if ctx.has_bias else None), None, None
