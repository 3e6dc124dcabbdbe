"""Summaries of per-image estimates: standard errors, bits per dimension (and whether they apply),
active units."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Burda et al.'s threshold on Cov_x(E_q[z_u]) for a latent unit to count as active.
ACTIVE_UNIT_THRESHOLD = 0.01


def bits_per_dim(nats: float, dims: int) -> float:
    """Nats per image -> bits per dimension: ``nats / (dims * ln 2)``."""
    return nats / (dims * math.log(2))


def standard_error(values: Tensor) -> float:
    """Standard error of the mean of ``values`` (sample standard deviation / sqrt(n)); 0 for one value."""
    n = values.numel()
    return float(values.double().std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0


def active_units(posterior_means: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions u with Cov_x(E_q[z_u | x]) > ``threshold`` (Burda et al. 2015), over the rows of
    ``posterior_means`` [N, L]."""
    if posterior_means.shape[0] < 2:
        return 0
    return int((posterior_means.double().var(dim=0, unbiased=True) > threshold).sum())


@torch.inference_mode()
def likelihood_is_discrete(model, x: Tensor) -> bool:
    """Whether p(x|z) is a distribution over a discrete set that every image of ``x`` lies in.

    Only then is -log p(x) a code length and bits per dimension meaningful. The set is the
    likelihood's declared ``levels`` (evenly spaced over its ``support``, as the conformance kit
    reads them: the discretized logistics' 256 grey levels), else the ``support`` of the
    distribution it returns (a Bernoulli's ``boolean``).
    """
    values = model.likelihood.level_values()
    if values is not None:  # evenly spaced: x is on the grid when its step count is whole
        lo, hi = float(values[0]), float(values[-1])
        steps = (x.double() - lo) / (hi - lo) * (len(values) - 1)
        return bool(((x >= lo) & (x <= hi)).all() and ((steps - steps.round()).abs() < 1e-3).all())
    z = model.prior.sample(1).to(x.device)
    dist = model.likelihood(model.decoder(z))
    support = getattr(dist, "support", None)
    if support is None or not getattr(support, "is_discrete", False):
        return False
    try:
        return bool(support.check(x).all())
    except (RuntimeError, NotImplementedError):
        return False
