"""What every trained sampler shares: checking the codes and its training settings, and the Adam
loop that minimises a per-code loss over shuffled mini-batches of the codes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

import zoo


def check_codes(codes: Tensor, latent_size: int, what: str, at_least: int = 2) -> Tensor:
    """``codes`` as a float32 [N, latent_size] tensor of finite numbers, or a one-line ZooError."""
    if not isinstance(codes, Tensor) or codes.dim() != 2 or codes.shape[1] != latent_size:
        shape = tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__
        raise zoo.ZooError(f"{what} fits codes shaped [N, {latent_size}], got {shape}")
    if len(codes) < at_least:
        raise zoo.ZooError(f"{what} needs at least {at_least} codes to fit, got {len(codes)}")
    if not bool(torch.isfinite(codes).all()):
        raise zoo.ZooError(f"{what}: the codes hold NaN or infinite values; the model's encoder is broken")
    return codes.detach().float()


def check_training(what: str, epochs: object, batch_size: object, lr: object) -> None:
    """A one-line ZooError unless ``epochs`` and ``batch_size`` are positive integers and ``lr`` a positive number."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise zoo.ZooError(f"{what} option {name} must be a positive integer (got {value!r})")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise zoo.ZooError(f"{what} option lr must be a positive number (got {lr!r})")


def train(
    module: nn.Module,
    loss: Callable[[Tensor], Tensor],
    codes: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    what: str = "sampler",
) -> dict[str, float]:
    """Minimise ``loss(batch)`` (a mean over the batch) with Adam over ``epochs`` passes of the
    shuffled ``codes``; returns the last epoch's mean loss, the epochs and the seconds taken."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    module.train()
    mean = float("nan")
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(codes), generator=generator).to(codes.device)
        total, count = 0.0, 0
        for start in range(0, len(codes), batch_size):
            batch = codes[order[start : start + batch_size]]
            value = loss(batch)
            if not torch.isfinite(value):
                raise zoo.ZooError(
                    f"{what}: the loss became {float(value)} in epoch {epoch}; lower lr or standardise the codes"
                )
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += float(value.detach()) * len(batch)
            count += len(batch)
        mean = total / count
        if log is not None and (epoch == epochs or epoch == 1 or epoch % max(1, epochs // 10) == 0):
            log(f"{what}: epoch {epoch}/{epochs}, loss {mean:.4f}")
    module.eval()
    return {"final_loss": mean, "epochs": epochs, "seconds": round(time.perf_counter() - started, 3)}


def standard_normal_nll(codes: Tensor) -> float:
    """The mean -log N(code; 0, I) of ``codes``: what the prior a sampler replaces scores them at."""
    return float(-torch.distributions.Normal(0.0, 1.0).log_prob(codes).sum(-1).mean())
