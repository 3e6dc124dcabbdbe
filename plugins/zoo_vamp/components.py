"""The VampPrior and the gated MLP networks of Tomczak & Welling, "VAE with a VampPrior"
(AISTATS 2018, arXiv:1705.07120).

The prior is a mixture of the encoder's own posteriors at K learned pseudo-inputs u_k::

    p(z) = 1/K sum_k q(z | u_k)

so it needs the model's encoder: its factory names an ``encoder`` parameter and zoo passes the
encoder the model is built with (the same module, whose parameters the model stores once).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import zoo

#: The encoder clips its log-variance to this range (hardtanh), as the authors' code does, so
#: that neither q(z|x) nor the prior's components can collapse or blow up.
LOG_VAR_RANGE = (-6.0, 2.0)


def _he_normal_(layer: nn.Linear) -> None:
    """Weights drawn from N(0, 2 / fan_in), the initialisation of the authors' code (biases keep torch's)."""
    nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / layer.in_features))


class GatedDense(nn.Module):
    """A gated dense layer (Dauphin et al. 2017), the paper's hidden unit: h = (Wx + b) * sigmoid(Vx + c)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.gate = nn.Linear(in_features, out_features)
        for layer in (self.linear, self.gate):
            _he_normal_(layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) * torch.sigmoid(self.gate(x))


def _gated_stack(in_features: int, hidden: int, layers: int) -> nn.Sequential:
    if layers < 1 or hidden < 1:
        raise zoo.ZooError(f"gated-mlp needs layers >= 1 and hidden >= 1 (got layers={layers}, hidden={hidden})")
    sizes = [in_features] + [hidden] * layers
    return nn.Sequential(*(GatedDense(a, b) for a, b in zip(sizes, sizes[1:])))


class GatedMLPEncoder(zoo.Encoder):
    """x -> ``layers`` gated dense layers of ``hidden`` units -> diagonal Gaussian q(z|x).

    The paper's encoder: two gated layers of 300 units, a linear mean and a log-variance clipped
    to [-6, 2] by a hardtanh.
    """

    def __init__(self, latent_size: int, data_shape: tuple[int, ...], hidden: int = 300, layers: int = 2) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.body = nn.Sequential(nn.Flatten(), *_gated_stack(math.prod(data_shape), hidden, layers))
        self.mean = nn.Linear(hidden, latent_size)
        self.log_var = nn.Linear(hidden, latent_size)
        for layer in (self.mean, self.log_var):
            _he_normal_(layer)

    def forward(self, x: Tensor) -> Independent:
        h = self.body(x)
        return zoo.diagonal_gaussian(self.mean(h), nn.functional.hardtanh(self.log_var(h), *LOG_VAR_RANGE))


class GatedMLPDecoder(zoo.Decoder):
    """z -> ``layers`` gated dense layers of ``hidden`` units -> the likelihood's parameters.

    The paper ends in a sigmoid (Bernoulli means); here the last layer is linear, so a Bernoulli
    likelihood gets logits, and any other likelihood gets the numbers it asked for.
    """

    def __init__(self, latent_size: int, output_shape: tuple[int, ...], hidden: int = 300, layers: int = 2) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.output_shape = tuple(output_shape)
        self.body = _gated_stack(latent_size, hidden, layers)
        self.out = nn.Linear(hidden, math.prod(self.output_shape))
        _he_normal_(self.out)

    def decode(self, z: Tensor) -> Tensor:
        return self.out(self.body(z.to(self.out.weight.dtype))).view(len(z), *self.output_shape)


class DiagonalGaussianMixture(MixtureSameFamily):
    """A :class:`~torch.distributions.MixtureSameFamily` of diagonal Gaussians (``Independent(Normal)``
    components) whose ``log_prob`` needs no [..., K, D] tensor.

    torch's ``log_prob`` broadcasts every z against every component ([..., K, D] elementwise work,
    forward and backward), which dominates a VampPrior training step. Expanding the square,
    sum_d (z_d - mu_kd)^2 / s_kd^2 = z^2 . (1/s_k^2) - 2 z . (mu_k / s_k^2) + sum_d mu_kd^2 / s_kd^2,
    turns it into two [..., D] x [D, K] products. The expansion cancels large terms, so it is done
    in float64 (cheap: the products are small) and gives torch's value to float32 precision; it is
    the same density, with the same gradients. Sampling is torch's.
    """

    def log_prob(self, value: Tensor) -> Tensor:
        components = self.component_distribution
        if not (
            isinstance(components, Independent)
            and isinstance(components.base_dist, Normal)
            and components.reinterpreted_batch_ndims == 1
            and components.base_dist.loc.dim() == 2
        ):
            return super().log_prob(value)
        loc = components.base_dist.loc.double()  # [K, D]
        scale = components.base_dist.scale.double()
        precision = scale.pow(-2)
        z = value.double()
        quadratic = (z * z) @ precision.T - 2 * (z @ (loc * precision).T) + (loc * loc * precision).sum(-1)
        constant = 2 * scale.log().sum(-1) + loc.shape[-1] * math.log(2 * math.pi)
        log_components = -0.5 * (quadratic + constant)  # [..., K]
        log_weights = torch.log_softmax(self.mixture_distribution.logits.double(), dim=-1)
        return torch.logsumexp(log_components + log_weights, dim=-1).to(value.dtype)


class VampPrior(zoo.Prior):
    """The VampPrior: p(z) = 1/K sum_k q(z | u_k), a uniform mixture of the encoder's posteriors
    at ``pseudo_inputs`` (K) learned pseudo-inputs u_k shaped like the data.

    As in the paper, each pseudo-input is a hardtanh into [0, 1] of a learned vector; the paper
    writes it as a linear map, without bias, from one-hot "idle" inputs, whose weight column k is
    that vector, so the vectors are stored here directly (``pseudo_input_weights``, [K, *data_shape]).
    They start at N(``init_mean``, ``init_std``): the authors' code uses std 0.01. Its mean
    (``-0.05`` in the code's defaults) would put every pseudo-input below the hardtanh's lower
    bound, where it receives no gradient, so the default here is +0.05: inside [0, 1], learning.

    ``forward()`` returns a :class:`torch.distributions.MixtureSameFamily` (a
    :class:`DiagonalGaussianMixture`, whose ``log_prob`` is computed with matrix products) whose
    components are the encoder's q(z|u_k), so ``log_prob`` is the log-sum-exp of the component
    densities minus log K, and gradients reach the pseudo-inputs and the encoder through it.
    """

    def __init__(
        self,
        encoder: zoo.Encoder,
        latent_size: int,
        data_shape: tuple[int, ...],
        pseudo_inputs: int = 500,
        init_mean: float = 0.05,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, zoo.Encoder):
            raise zoo.ZooError(f"the vamp prior needs the model's zoo.Encoder, got {type(encoder).__name__}")
        if getattr(encoder, "latent_size", latent_size) != latent_size:
            raise zoo.ZooError(f"the vamp prior has latent_size {latent_size} but its encoder {encoder.latent_size}")
        if pseudo_inputs < 1:
            raise zoo.ZooError(f"the vamp prior needs at least 1 pseudo-input (got {pseudo_inputs})")
        if init_std < 0:
            raise zoo.ZooError(f"init_std must be >= 0 (got {init_std})")
        self.latent_size = latent_size
        self.encoder = encoder
        self.pseudo_input_weights = nn.Parameter(torch.empty(pseudo_inputs, *data_shape).normal_(init_mean, init_std))

    @property
    def pseudo_inputs(self) -> Tensor:
        """The pseudo-inputs u_k in [0, 1], [K, *data_shape]."""
        return nn.functional.hardtanh(self.pseudo_input_weights, 0.0, 1.0)

    def forward(self) -> DiagonalGaussianMixture:
        components = self.encoder(self.pseudo_inputs)  # batch [K], event [latent_size]
        uniform = torch.zeros(len(self.pseudo_input_weights), device=self.pseudo_input_weights.device)
        return DiagonalGaussianMixture(
            Categorical(logits=uniform, validate_args=False), components, validate_args=False
        )

    def extra_repr(self) -> str:
        return f"latent_size={self.latent_size}, pseudo_inputs={len(self.pseudo_input_weights)}"
