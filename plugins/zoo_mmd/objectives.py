"""The objectives of the ``mmd`` plugin: WAE-MMD (Tolstikhin et al. 2018) and InfoVAE-MMD (Zhao et al. 2019).

Both compare the batch's codes with as many draws of the model's prior by the MMD of
:mod:`zoo_mmd.mmd`: the codes of a batch are draws of the aggregate posterior q(z) = E_x q(z|x).
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

import zoo
from zoo_mmd.mmd import DEFAULT_SCALES, check_kernel, mmd, prior_sample


def _number(name: str, value: object, least: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise zoo.ZooError(f"{name} must be a finite number (got {value!r})")
    if least is not None and (value <= least if strict else value < least):
        raise zoo.ZooError(f"{name} must be {'>' if strict else '>='} {least:g} (got {value!r})")
    return float(value)


def kl_term(q: Distribution, p: Distribution, z: Tensor) -> Tensor:
    """KL(q || p) per example: analytic when torch's KL registry knows the pair, else log q(z) - log p(z) at ``z``."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z)


class WAEMMD(zoo.Objective):
    """The WAE-MMD objective: reconstruction cost + ``reg_weight`` x MMD(codes, prior draws), per example.

    The reconstruction cost is -log p(x|z) of the model's likelihood at the code z (a squared
    error, up to constants, for a fixed-variance ``gaussian`` likelihood, the paper's cost). The
    encoder may be deterministic (it returns a ``zoo.PointMass``, as in the paper's experiments)
    or stochastic (one draw of q(z|x)); the objective never asks for a density
    (``needs_density = False``). Options, named as pythae names them: ``reg_weight`` (the paper's
    lambda, 10 for MNIST), ``kernel_choice`` (``imq``, the paper's, or ``rbf``),
    ``kernel_bandwidth`` (sigma: C = 2 L sigma^2 for a N(0, sigma^2 I) prior) and ``scales`` (the
    multiples of C the kernel is summed over).
    """

    needs_density = False

    def __init__(
        self, reg_weight: float = 10.0, kernel_choice: str = "imq", kernel_bandwidth: float = 1.0, scales=DEFAULT_SCALES
    ) -> None:
        super().__init__()
        self.reg_weight = _number("reg_weight", reg_weight, 0.0)
        self.kernel, self.bandwidth, self.scales = check_kernel(kernel_choice, kernel_bandwidth, scales)

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        z = model.encoder(x).rsample()
        recon = model.likelihood(model.decoder(z)).log_prob(x)
        z_prior = prior_sample(model.prior, len(z), z)
        discrepancy = mmd(z.float(), z_prior.float(), self.kernel, self.bandwidth, self.scales)
        loss = -recon.mean() + self.reg_weight * discrepancy
        return zoo.ObjectiveOutput(loss, {"recon": -recon.mean().detach(), "mmd": discrepancy.detach()})

    def extra_repr(self) -> str:
        return (
            f"reg_weight={self.reg_weight}, kernel_choice={self.kernel!r}, kernel_bandwidth={self.bandwidth}, "
            f"scales={list(self.scales)}"
        )


class InfoVAEMMD(zoo.Objective):
    """The InfoVAE objective with the MMD divergence (Zhao et al. 2019, eq. 6), per example:

        -E_q[log p(x|z)] + (1 - alpha) KL(q(z|x) || p(z)) + (alpha + lambda - 1) MMD(q(z), p(z))

    with lambda the option ``lbd`` (pythae's name: ``lambda`` is a Python keyword). ``alpha`` = 0
    and ``lbd`` = 1 is the ELBO; ``alpha`` = 1 drops the KL term (the "MMD-VAE"); the paper's
    MNIST models keep ``alpha`` = 0 with a large lambda. The KL is analytic when torch knows the
    pair and a one-sample estimate otherwise, as in zoo's ``elbo``. ``kernel_choice``,
    ``kernel_bandwidth`` and ``scales`` are those of ``wae-mmd``. ``alpha`` above 1 (a negative KL
    weight) or ``alpha + lbd`` below 1 (a negative MMD weight) would reward moving q away from the
    prior, and is refused.
    """

    def __init__(
        self,
        alpha: float = 0.0,
        lbd: float = 1000.0,
        kernel_choice: str = "imq",
        kernel_bandwidth: float = 1.0,
        scales=DEFAULT_SCALES,
    ) -> None:
        super().__init__()
        self.alpha = _number("alpha", alpha)
        self.lbd = _number("lbd", lbd, 0.0, strict=True)
        if self.alpha > 1:
            raise zoo.ZooError(f"alpha must be at most 1: the KL weight 1 - alpha would be negative (got {alpha!r})")
        if self.alpha + self.lbd < 1:
            raise zoo.ZooError(
                "alpha + lbd must be at least 1: the MMD weight alpha + lbd - 1 would be negative "
                f"(got alpha={alpha!r}, lbd={lbd!r})"
            )
        self.kernel, self.bandwidth, self.scales = check_kernel(kernel_choice, kernel_bandwidth, scales)

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        q = model.encoder(x)
        z = q.rsample()
        recon = model.likelihood(model.decoder(z)).log_prob(x)
        kl = kl_term(q, model.prior(), z)
        z_prior = prior_sample(model.prior, len(z), z)
        discrepancy = mmd(z.float(), z_prior.float(), self.kernel, self.bandwidth, self.scales)
        loss = -recon.mean() + (1 - self.alpha) * kl.mean() + (self.alpha + self.lbd - 1) * discrepancy
        logs = {"recon": -recon.mean().detach(), "kl": kl.mean().detach(), "mmd": discrepancy.detach()}
        return zoo.ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, lbd={self.lbd}, kernel_choice={self.kernel!r}, kernel_bandwidth={self.bandwidth}"
