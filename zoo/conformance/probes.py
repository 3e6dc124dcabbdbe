"""Data and probes for the conformance checks: random batches in a likelihood's support, the values
a discrete likelihood puts mass on, and the tensors a component produces in a model."""

from __future__ import annotations

from collections.abc import Sequence


def support_values(likelihood, data_shape: Sequence[int]):
    """The values a discrete likelihood puts mass on (a 1-D tensor), or ``None`` for a density.

    Declared by a ``levels`` attribute (evenly spaced over ``support``), or read from the
    ``support`` of the distribution it returns (``boolean``, a small ``integer_interval``).
    """
    import torch
    from torch.distributions import constraints

    declared = likelihood.level_values()
    if declared is not None:
        return declared
    params = torch.zeros(1, *likelihood.param_shape(tuple(data_shape)))
    support = getattr(likelihood(params), "support", None)
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.boolean:
        return torch.tensor([0.0, 1.0], dtype=torch.float64)
    if isinstance(support, (constraints.integer_interval,)) and support.upper_bound - support.lower_bound <= 1024:
        return torch.arange(support.lower_bound, support.upper_bound + 1, dtype=torch.float64)
    return None


def synthetic_batch(likelihood, data_shape: Sequence[int], n: int, generator=None):
    """``n`` random examples in the likelihood's support, shaped [n, *data_shape]."""
    import torch

    shape = (n, *data_shape)
    values = support_values(likelihood, data_shape)
    if values is not None:
        index = torch.randint(len(values), shape, generator=generator)
        return values[index].float()
    if likelihood.support is not None:
        lo, hi = likelihood.support
        return lo + (hi - lo) * torch.rand(shape, generator=generator)
    return torch.randn(shape, generator=generator)


def probe(kind: str, model, x):
    """The tensors one component produces in a model, for comparisons (seed the RNG first)."""
    import torch

    like = {"dtype": x.dtype, "device": x.device}
    if kind == "encoder":
        q = model.encoder(x)
        z = q.rsample()
        return [z] if model.deterministic else [z, q.log_prob(z)]
    if kind == "decoder":
        return [model.decoder(torch.randn(len(x), model.latent_size, **like))]
    if kind == "prior":
        p = model.prior()
        z = p.sample((len(x),))
        return [z, p.log_prob(z)]
    params = torch.randn(len(x), *model.likelihood.param_shape(model.data_shape), **like)
    dist = model.likelihood(params)
    return [dist.log_prob(x), dist.mean]


def shape_text(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def param_name(model, parameter) -> str:
    return next((n for n, p in model.named_parameters() if p is parameter), "?")
