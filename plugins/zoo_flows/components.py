"""A RealNVP flow prior (Dinh et al., "Density estimation using Real NVP", ICLR 2017) and an MLP
encoder/decoder (``deep-mlp``) of any depth, width and activation.

The MLPs are :func:`zoo.mlp` stacks; at their defaults (two hidden layers of 200 tanh units) they
are the network of Burda et al., "Importance Weighted Autoencoders" (ICLR 2016), the same as the
iwae plugin's ``burda-mlp`` with one stochastic layer. The plugin keeps its own id for it rather
than depend on the iwae plugin being loaded, and runs that used ``deep-mlp`` keep loading.

The prior is p(z) = base(f^-1(z)) |det d f^-1 / dz| with f a stack of affine couplings and the
base N(0, I): a :class:`torch.distributions.TransformedDistribution`, so ``log_prob``, ``sample``
and ``rsample`` come from torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal, TransformedDistribution, constraints
from torch.distributions.transforms import Transform

import zoo

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


class AffineCoupling(Transform):
    """The RealNVP affine coupling y = m * x + (1 - m) * (x * exp(s(m * x)) + t(m * x)).

    ``mask`` m (0/1, [L]) marks the coordinates that pass through unchanged and condition the
    others; ``conditioner`` maps the masked input to ``(shift t, log_scale s)``, each [..., L].
    The Jacobian is triangular, so log |det dy/dx| = sum over the unmasked coordinates of s.
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True
    sign = +1

    def __init__(
        self, mask: Tensor, conditioner: Callable[[Tensor], tuple[Tensor, Tensor]], cache_size: int = 0
    ) -> None:
        super().__init__(cache_size=cache_size)
        self.mask = mask
        self.conditioner = conditioner
        # (x, y, log_scale) of the last call in either direction: log_abs_det_jacobian(x, y)
        # right after it (what TransformedDistribution does) reuses the conditioner's output.
        self._last: tuple[Tensor, Tensor, Tensor] | None = None

    def _scale_and_shift(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self.conditioner(kept)
        free = 1 - self.mask
        return shift * free, log_scale * free  # the kept coordinates get the identity

    def _call(self, x: Tensor) -> Tensor:
        shift, log_scale = self._scale_and_shift(x * self.mask)
        y = x * torch.exp(log_scale) + shift
        self._last = (x, y, log_scale)
        return y

    def _inverse(self, y: Tensor) -> Tensor:
        shift, log_scale = self._scale_and_shift(y * self.mask)  # m * y == m * x
        x = (y - shift) * torch.exp(-log_scale)
        self._last = (x, y, log_scale)
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        last = self._last
        if last is not None and last[0] is x and last[1] is y:
            log_scale = last[2]
        else:
            log_scale = self._scale_and_shift(x * self.mask)[1]
        return log_scale.sum(-1)

    def with_cache(self, cache_size: int = 1) -> AffineCoupling:
        if self._cache_size == cache_size:
            return self
        return AffineCoupling(self.mask, self.conditioner, cache_size=cache_size)


class CouplingNet(nn.Module):
    """The conditioner of one coupling: an MLP from the kept coordinates to (shift, log-scale).

    The log-scale is ``scale * tanh(raw)`` with a learned per-coordinate ``scale``, as in the
    RealNVP paper, which keeps early steps from exploding. The last layer starts small, so the
    coupling starts close to the identity (and every layer still gets a gradient at step one).
    """

    def __init__(self, latent_size: int, hidden: int, activation: str = "relu", init_scale: float = 1e-2) -> None:
        super().__init__()
        self.net = zoo.mlp([latent_size, hidden, hidden, 2 * latent_size], ACTIVATIONS[activation])
        last = self.net[-1]
        nn.init.normal_(last.weight, 0.0, init_scale / math.sqrt(hidden))
        nn.init.zeros_(last.bias)
        self.scale = nn.Parameter(torch.ones(latent_size))

    def forward(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = self.net(kept).chunk(2, dim=-1)
        return shift, self.scale * torch.tanh(raw)


class RealNVPPrior(zoo.Prior):
    """p(z): N(0, I) pushed through ``layers`` affine couplings with alternating masks.

    Coupling k keeps the coordinates of parity k (even, odd, even, ...) and transforms the
    others, so after two layers every coordinate has been transformed. ``hidden`` is the width
    of each conditioner's two hidden layers. The flow starts near the identity, so the prior
    starts near N(0, I). There is no analytic KL with it: the ELBO takes the Monte-Carlo path.
    """

    def __init__(self, latent_size: int, layers: int = 4, hidden: int = 128, activation: str = "relu") -> None:
        super().__init__()
        if layers < 1 or hidden < 1:
            raise zoo.ZooError(f"realnvp needs layers >= 1 and hidden >= 1 (got layers={layers}, hidden={hidden})")
        if activation not in ACTIVATIONS:
            raise zoo.ZooError(f"realnvp activation must be one of {', '.join(ACTIVATIONS)} (got {activation!r})")
        self.latent_size = latent_size
        self.couplings = nn.ModuleList(CouplingNet(latent_size, hidden, activation) for _ in range(layers))
        parity = torch.arange(latent_size) % 2
        self.register_buffer("masks", torch.stack([(parity == k % 2).float() for k in range(layers)]), persistent=False)
        self.register_buffer("loc", torch.zeros(latent_size), persistent=False)
        self.register_buffer("scale", torch.ones(latent_size), persistent=False)

    def transforms(self) -> list[AffineCoupling]:
        """The couplings from the base to z, in order."""
        return [AffineCoupling(mask, net) for mask, net in zip(self.masks, self.couplings)]

    def forward(self) -> TransformedDistribution:
        base = Independent(Normal(self.loc, self.scale, validate_args=False), 1, validate_args=False)
        return TransformedDistribution(base, self.transforms(), validate_args=False)


def _activation(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise zoo.ZooError(f"mlp activation must be one of {', '.join(ACTIVATIONS)} (got {name!r})")
    return ACTIVATIONS[name]


class DeepMLPEncoder(zoo.Encoder):
    """x -> ``layers`` hidden layers of ``hidden`` units -> diagonal Gaussian q(z|x)."""

    def __init__(
        self,
        latent_size: int,
        data_shape: tuple[int, ...],
        hidden: int = 200,
        layers: int = 2,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if layers < 1 or hidden < 1:
            raise zoo.ZooError(f"mlp needs layers >= 1 and hidden >= 1 (got layers={layers}, hidden={hidden})")
        self.latent_size = latent_size
        sizes = [math.prod(data_shape), *[hidden] * layers, 2 * latent_size]
        self.net = nn.Sequential(nn.Flatten(), *zoo.mlp(sizes, _activation(activation)))

    def forward(self, x: Tensor) -> Independent:
        mean, log_var = self.net(x).chunk(2, dim=1)
        return zoo.diagonal_gaussian(mean, log_var)


class DeepMLPDecoder(zoo.Decoder):
    """z -> ``layers`` hidden layers of ``hidden`` units -> the likelihood's parameters."""

    def __init__(
        self,
        latent_size: int,
        output_shape: tuple[int, ...],
        hidden: int = 200,
        layers: int = 2,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if layers < 1 or hidden < 1:
            raise zoo.ZooError(f"mlp needs layers >= 1 and hidden >= 1 (got layers={layers}, hidden={hidden})")
        self.latent_size = latent_size
        self.output_shape = tuple(output_shape)
        sizes = [latent_size, *[hidden] * layers, math.prod(self.output_shape)]
        self.net = zoo.mlp(sizes, _activation(activation))

    def decode(self, z: Tensor) -> Tensor:
        return self.net(z).view(len(z), *self.output_shape)
