"""An objective of the plugin's own: the ELBO with a cyclical KL weight (Fu et al. 2019)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import zoo


class CyclicalELBO(zoo.Objective):
    """The negative ELBO, its KL term weighted by a schedule that repeats every ``period`` steps:
    the weight rises linearly from 0 to 1 over the first ``ratio`` of each cycle, then stays at 1.

    The step counter is a buffer, so checkpoints keep it and a resumed run continues the schedule.
    It counts only in training mode: evaluating the objective does not advance it.
    """

    def __init__(self, period: int = 15000, ratio: float = 0.5) -> None:
        super().__init__()
        if period < 1:
            raise zoo.ZooError(f"period must be at least 1 step (got {period})")
        if not 0 < ratio <= 1:
            raise zoo.ZooError(f"ratio must lie in (0, 1] (got {ratio})")
        self.period = period
        self.ratio = float(ratio)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def kl_weight(self) -> Tensor:
        position = (self.steps % self.period).float() / self.period
        return torch.clamp(position / self.ratio, max=1.0)

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        q = model.encoder(x)
        z = q.rsample()
        recon = model.likelihood(model.decoder(z)).log_prob(x)
        # One-sample KL estimate: it needs only log_prob, so it works with any prior (a mixture too).
        kl = q.log_prob(z) - model.prior().log_prob(z)
        weight = self.kl_weight()
        if self.training:
            self.steps += 1
        loss = -(recon - weight * kl).mean()
        logs = {"recon": -recon.mean().detach(), "kl": kl.mean().detach(), "kl_weight": weight.detach()}
        return zoo.ObjectiveOutput(loss, logs)
