"""Objectives computed from whatever is composed: the ELBO and the importance-weighted bound.

Everything is per example (shape [B]) and in nats. Only ``torch.distributions`` is used:
the KL term is analytic when torch's KL registry knows the (posterior, prior) pair and a
Monte-Carlo estimate ``log q(z|x) - log p(z)`` at the sampled ``z`` otherwise.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

_ANALYTIC_KL: dict[tuple[type, type], bool] = {}


class ELBOTerms(NamedTuple):
    """Per-example terms of the evidence lower bound, in nats: ``elbo = recon - kl``."""

    elbo: Tensor
    recon: Tensor  # E_q[log p(x|z)], one-sample estimate
    kl: Tensor  # KL(q(z|x) || p(z)), analytic or one-sample estimate


def kl_term(q: Distribution, p: Distribution, z: Tensor | None = None) -> Tensor:
    """KL(q || p) per example: analytic if torch knows the pair, else Monte-Carlo at ``z``.

    ``z`` must be a sample of ``q`` (it is drawn when missing and the KL is not analytic).
    """
    key = (type(q), type(p))
    if _ANALYTIC_KL.get(key, True):
        try:
            kl = kl_divergence(q, p)
            _ANALYTIC_KL[key] = True
            return kl
        except NotImplementedError:
            _ANALYTIC_KL[key] = False
    if z is None:
        z = q.rsample()
    return q.log_prob(z) - p.log_prob(z)


def has_analytic_kl(q: Distribution, p: Distribution) -> bool:
    """Whether :func:`kl_term` takes the analytic path for this pair."""
    try:
        kl_divergence(q, p)
        return True
    except NotImplementedError:
        return False


def log_mean_exp(values: Tensor, dim: int = 0) -> Tensor:
    """log(mean(exp(values))) along ``dim``, without overflow."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])
