"""The optimizer and the per-epoch learning-rate schedule a recipe's training settings ask for."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.recipe import Training


def build_optimizer(
    training: Training, params: list[nn.Parameter], device: torch.device, *, capturable: bool = False
) -> torch.optim.Optimizer:
    """Adam, AdamW, Adagrad or SGD (momentum 0.9) over ``params``; fused kernels on the CPU and CUDA
    for Adam and AdamW, and ``capturable`` (the step count on the device) when a CUDA graph replays
    the step. Adagrad (Kingma & Welling's optimiser) keeps torch's defaults: no learning-rate decay,
    accumulators starting at 0."""
    fused: dict[str, Any] = {"fused": True} if device.type in ("cuda", "cpu") else {}
    if capturable and device.type == "cuda":
        fused["capturable"] = True
    t = training
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, **fused)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, **fused)
    if t.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay, momentum=0.9)


def build_schedule(training: Training, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch: epoch e (1-based) trains at ``lr * training.lr_factor(e)``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: training.lr_factor(done + 1))
