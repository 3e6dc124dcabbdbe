"""Distributions zoo adds to ``torch.distributions``: :func:`diagonal_gaussian`, the output head of
most encoders, :class:`Chain`, for hierarchies of latents, and :class:`PointMass`, the "posterior"
of a deterministic encoder (an autoencoder's, a WAE's, an RAE's, a VQ-VAE's).

``diagonal_gaussian(mean, log_var)`` is ``Independent(Normal(mean, exp(log_var / 2)), 1)`` in at least
float32: a layer predicts a mean and a log-variance per latent, and the posterior q(z|x) is the
diagonal Gaussian they describe. Plugins call it on their own layers' outputs, so their
parameter names (and checkpoints) are theirs::

    mean, log_var = self.net(x).chunk(2, dim=-1)
    return zoo.diagonal_gaussian(mean, log_var)

A model with several stochastic layers keeps the four interfaces unchanged: its latent ``z`` is
one flat vector, the concatenation of named parts (``z1``, ``z2``, ...), and its posterior and
prior are :class:`Chain` distributions over that vector. A chain samples its parts one after
another, each from a conditional that sees the parts drawn before it, and its ``log_prob`` is
the sum of the conditionals' log-densities. The ELBO and the importance-weighted bound need
nothing else (``rsample`` and ``log_prob`` of the whole), so the trainer and the evaluator have
no special case for hierarchies; the KL between two chains is estimated by Monte Carlo.

Burda et al.'s two-layer model, q(z1|x) q(z2|z1) and p(z2) p(z1|z2)::

    q = Chain({"z1": 100, "z2": 50}, [("z1", lambda z: q_z1(x)), ("z2", lambda z: q_z2(z["z1"]))])
    p = Chain({"z1": 100, "z2": 50}, [("z2", lambda z: p_z2()), ("z1", lambda z: p_z1(z["z2"]))])

Both lay out ``z`` as [z1, z2] (the ``layout``), whatever order they sample in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, constraints

from zoo.errors import ZooError

Conditional = Callable[[dict[str, Tensor]], Distribution]


def diagonal_gaussian(mean: Tensor, log_var: Tensor) -> Independent:
    """The diagonal Gaussian with ``mean`` and log-variance ``log_var`` ([..., L] each): batch shape
    [...], event shape [L], with ``rsample`` (torch's ``Independent(Normal(mean, std), 1)``).

    The standard deviation is ``exp(log_var / 2)``. Half-precision inputs (under autocast) are
    computed in float32, which keeps the KL term and the log-densities exact; float64 stays float64.
    Arguments are not validated (``validate_args=False``): a NaN reaches the loss, where the
    trainer reports it, instead of raising inside the forward pass.
    """
    dtype = torch.promote_types(mean.dtype, torch.float32)
    mean, log_var = mean.to(dtype), log_var.to(dtype)
    return Independent(Normal(mean, torch.exp(0.5 * log_var), validate_args=False), 1, validate_args=False)


class Chain(Distribution):
    """A joint distribution over a flat vector of named parts, sampled ancestrally.

    ``layout`` maps each part's name to its size, in the order the parts sit in the vector.
    ``steps`` lists ``(name, conditional)`` in sampling order; ``conditional(parts)`` receives
    the parts drawn so far (a dict of tensors) and returns a distribution over ``name`` with
    event shape [size]. The chain's batch shape is the first step's.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def __init__(
        self, layout: Mapping[str, int], steps: Sequence[tuple[str, Conditional]], validate_args: bool | None = None
    ) -> None:
        self.layout = dict(layout)
        self.steps = list(steps)
        names = [name for name, _ in self.steps]
        if sorted(names) != sorted(self.layout) or len(set(names)) != len(names):
            raise ValueError(f"Chain steps {names} must name each part of the layout {list(self.layout)} once")
        self._first = self.steps[0][1]({})
        total = sum(self.layout.values())
        super().__init__(self._first.batch_shape, torch.Size([total]), validate_args=False)

    def split(self, z: Tensor) -> dict[str, Tensor]:
        """The named parts of a flat latent ``z`` [..., total]."""
        return dict(zip(self.layout, z.split(list(self.layout.values()), dim=-1)))

    def _join(self, parts: dict[str, Tensor]) -> Tensor:
        return torch.cat([parts[name] for name in self.layout], dim=-1)

    def _draw(self, sample_shape: torch.Size, how: str) -> Tensor:
        target = torch.Size(sample_shape) + self.batch_shape
        parts: dict[str, Tensor] = {}
        for i, (name, conditional) in enumerate(self.steps):
            dist = self._first if i == 0 else conditional(parts)
            extra = target[: len(target) - len(dist.batch_shape)]
            if how == "mean":
                value = dist.mean.expand(*target, *dist.event_shape)
            elif how == "rsample":
                value = dist.rsample(extra)
            else:
                value = dist.sample(extra)
            parts[name] = value
        return self._join(parts)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        return self._draw(torch.Size(sample_shape), "rsample")

    def sample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        with torch.no_grad():
            return self._draw(torch.Size(sample_shape), "sample")

    def log_prob(self, value: Tensor) -> Tensor:
        parts = self.split(value)
        seen: dict[str, Tensor] = {}
        total = None
        for i, (name, conditional) in enumerate(self.steps):
            dist = self._first if i == 0 else conditional(seen)
            term = dist.log_prob(parts[name])
            total = term if total is None else total + term
            seen[name] = parts[name]
        assert total is not None
        return total

    @property
    def mean(self) -> Tensor:
        """Each part's conditional mean given the means of the parts before it (ancestral means).

        For a nonlinear chain this is not the joint's mean; it is the point reconstructions and
        interpolations use.
        """
        return self._draw(torch.Size(), "mean")

    def __repr__(self) -> str:
        return f"Chain(layout={self.layout}, order={[name for name, _ in self.steps]})"


class NoDensityError(ZooError):
    """Asked for the density of a :class:`PointMass`: a deterministic code has none."""


class PointMass(Distribution):
    """All mass at ``loc`` ([..., L]): batch shape [...], event shape [L].

    A deterministic encoder returns one: ``rsample`` is ``loc`` itself (gradients flow through it),
    ``mean`` is ``loc``, the variance is zero. It has no density, so ``log_prob`` raises
    :class:`NoDensityError`: the ELBO and the importance-weighted bound do not apply to such a model,
    and the objectives that need them refuse it (``Objective.needs_density``).
    """

    arg_constraints = {"loc": constraints.real_vector}
    support = constraints.real_vector
    has_rsample = True
    deterministic = True

    def __init__(self, loc: Tensor, validate_args: bool | None = False) -> None:
        if loc.dim() < 1:
            raise ZooError(f"PointMass needs loc shaped [..., latent_size], got shape {tuple(loc.shape)}")
        self.loc = loc
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return PointMass(self.loc.expand(*batch_shape, self.loc.shape[-1]))

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        return self.loc.expand(*torch.Size(sample_shape), *self.loc.shape)

    def sample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        raise NoDensityError(
            "q(z|x) of a deterministic encoder is a point and has no density: the ELBO and IW-NLL do not apply; "
            "train it with an objective for autoencoders (ae, wae-mmd, rae) and score it by reconstruction and FID"
        )

    def entropy(self) -> Tensor:
        raise NoDensityError("a PointMass has no density, so no entropy")

    def __repr__(self) -> str:
        return f"PointMass(loc: {tuple(self.loc.shape)})"
