"""The networks. They subclass zoo's interfaces and return torch.distributions objects."""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.distributions import Independent

import zoo

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise zoo.ZooError(f"mlp activation must be one of {', '.join(ACTIVATIONS)} (got {name!r})")
    return ACTIVATIONS[name]()


class MLPEncoder(zoo.Encoder):
    """x -> one hidden layer -> mean and log-variance of a diagonal Gaussian q(z|x)."""

    def __init__(
        self, latent_size: int, data_shape: tuple[int, ...], hidden: int = 500, activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(data_shape), hidden),
            _activation(activation),
            nn.Linear(hidden, 2 * latent_size),
        )

    def forward(self, x: Tensor) -> Independent:
        mean, log_var = self.net(x).chunk(2, dim=1)
        return zoo.diagonal_gaussian(mean, log_var)


class MLPDecoder(zoo.Decoder):
    """z -> one hidden layer -> the likelihood's parameters (Bernoulli: one logit per pixel)."""

    def __init__(
        self, latent_size: int, output_shape: tuple[int, ...], hidden: int = 500, activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.output_shape = tuple(output_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_size, hidden),
            _activation(activation),
            nn.Linear(hidden, math.prod(self.output_shape)),
        )

    def decode(self, z: Tensor) -> Tensor:
        # z is a flat batch [N, latent]; zoo.Decoder.forward handles extra sample dimensions.
        return self.net(z).view(len(z), *self.output_shape)
