"""The training loss and logs summed over an epoch on the device, updated in place by each step
(a CUDA graph replays into them), with the first step whose loss was not finite."""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.distributed import Dist


class EpochSums:
    """Sums that never make the host wait: ``add`` is device work only; reading them (``means``,
    ``first_bad_step``) synchronises, so the trainer does that at the end of an epoch (or at every
    step on the CPU, where it costs nothing)."""

    def __init__(self, device: torch.device) -> None:
        self.logs: dict[str, Tensor] = {}  # created by the first step (or a CUDA graph's warm-up)
        self.loss = torch.zeros((), device=device)
        self.steps = torch.zeros((), dtype=torch.long, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def zero(self) -> None:
        for value in self.logs.values():
            value.zero_()
        self.loss.zero_()
        self.steps.zero_()
        self.first_bad.fill_(-1)

    def add(self, loss: Tensor, logs: dict[str, Tensor]) -> None:
        """Add one step's loss (detached) and logs; remember the step if the loss is not finite."""
        for key, value in logs.items():
            value = value.detach().float()
            if key in self.logs:
                self.logs[key].add_(value)
            else:
                self.logs[key] = value.clone()
        self.loss.add_(loss)
        self.steps.add_(1)
        self.first_bad.copy_(torch.where((self.first_bad < 0) & ~torch.isfinite(loss), self.steps, self.first_bad))

    def first_bad_step(self) -> int | None:
        """The 1-based step of this epoch whose loss was first NaN or infinite (None: none was)."""
        bad = int(self.first_bad)
        return bad if bad >= 0 else None

    def means(self, steps: int, dist: Dist) -> tuple[float, dict[str, float]]:
        """The epoch's mean loss and mean logs (``train_<key>``) over ``steps`` steps, averaged over
        the processes under torchrun."""
        loss = self.loss.clone()
        logs = {key: value.clone() for key, value in self.logs.items()}
        if dist.enabled:
            for value in (loss, *logs.values()):
                torch.distributed.all_reduce(value)
                value /= dist.world_size
        return float(loss) / steps, {f"train_{key}": float(value) / steps for key, value in sorted(logs.items())}
