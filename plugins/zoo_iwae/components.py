"""The networks of Burda, Grosse & Salakhutdinov (2015), "Importance Weighted Autoencoders", sec. 5.

Each stochastic layer of the encoder and decoder sits behind two deterministic tanh layers:

- one stochastic layer: x -> 200 -> 200 -> z (50); the decoder mirrors it;
- two stochastic layers: x -> 200 -> 200 -> z1 (100) -> 100 -> 100 -> z2 (50); the generative
  path goes z2 -> 100 -> 100 -> z1 -> 200 -> 200 -> x.

Gaussian layers are diagonal, their standard deviation the exponential of half a predicted
log-variance. The option ``layers`` lists the stochastic sizes bottom-up (``[50]`` or
``[100, 50]``); ``latent_size`` is their sum. With more than one layer, z is the concatenation
[z1, z2, ...] and the posterior and prior are :class:`zoo.Chain` distributions: q samples
upwards (z1 from x, z2 from z1), p downwards (the top layer from N(0, I), each lower one from
the layer above), and the decoder reads z1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

import zoo


def _check_layers(layers: Sequence[int], latent_size: int) -> list[int]:
    sizes = list(layers) if isinstance(layers, (list, tuple)) else []
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise zoo.ZooError(f"layers must be a non-empty list of positive integers (got {layers!r})")
    if sum(sizes) != latent_size:
        raise zoo.ZooError(
            f"layers {sizes} add up to {sum(sizes)}, but latent_size is {latent_size}; set latent_size to their sum"
        )
    return sizes


def _check_hidden(hidden: int) -> None:
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise zoo.ZooError(f"hidden must be a positive integer (got {hidden!r})")


def _hidden_sizes(layers: Sequence[int], hidden: int) -> list[int]:
    """Deterministic width below each stochastic layer: ``hidden`` below z1, then half of it (Burda: 200, 100)."""
    return [hidden if i == 0 else max(1, hidden // 2) for i in range(len(layers))]


class GaussianLayer(nn.Module):
    """Two tanh layers, then a diagonal Gaussian over ``out`` units."""

    def __init__(self, inp: int, hidden: int, out: int) -> None:
        super().__init__()
        self.net = zoo.mlp([inp, hidden, hidden, 2 * out], nn.Tanh)

    def forward(self, h: Tensor) -> Independent:
        mean, log_var = self.net(h).chunk(2, dim=-1)
        return zoo.diagonal_gaussian(mean, log_var)


class MLPEncoder(zoo.Encoder):
    """q(z|x): one Gaussian layer per stochastic layer, bottom-up."""

    def __init__(
        self,
        latent_size: int,
        data_shape: tuple[int, ...] = (1, 28, 28),
        layers: list[int] | None = None,
        hidden: int = 200,
    ) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.layers = _check_layers(layers or [latent_size], latent_size)
        _check_hidden(hidden)
        inputs = [int(torch.Size(data_shape).numel()), *self.layers[:-1]]
        self.stages = nn.ModuleList(
            GaussianLayer(i, h, o) for i, h, o in zip(inputs, _hidden_sizes(self.layers, hidden), self.layers)
        )

    def forward(self, x: Tensor):
        h = x.flatten(1)
        if len(self.stages) == 1:
            return self.stages[0](h)
        names = [f"z{i + 1}" for i in range(len(self.stages))]
        steps = [(names[0], lambda parts: self.stages[0](h))]
        for i in range(1, len(self.stages)):
            steps.append((names[i], lambda parts, i=i: self.stages[i](parts[names[i - 1]])))
        return zoo.Chain(dict(zip(names, self.layers)), steps)


class MLPDecoder(zoo.Decoder):
    """p(x|z1)'s parameters from z1: two tanh layers, then ``output_shape`` (Bernoulli logits)."""

    def __init__(
        self,
        latent_size: int,
        output_shape: tuple[int, ...] = (1, 28, 28),
        layers: list[int] | None = None,
        hidden: int = 200,
    ) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.layers = _check_layers(layers or [latent_size], latent_size)
        _check_hidden(hidden)
        self.output_shape = tuple(output_shape)
        out = int(torch.Size(self.output_shape).numel())
        self.net = zoo.mlp([self.layers[0], hidden, hidden, out], nn.Tanh)

    def decode(self, z: Tensor) -> Tensor:
        return self.net(z[:, : self.layers[0]]).view(-1, *self.output_shape)


class HierarchicalPrior(zoo.Prior):
    """p(z_top) = N(0, I), then p(z_i | z_{i+1}) Gaussian layers downwards; N(0, I) for one layer."""

    def __init__(self, latent_size: int, layers: list[int] | None = None, hidden: int = 200) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.layers = _check_layers(layers or [latent_size], latent_size)
        _check_hidden(hidden)
        widths = _hidden_sizes(self.layers, hidden)
        # stage i maps z_{i+1} to p(z_i | z_{i+1}); its width is the one between those layers in the encoder
        self.stages = nn.ModuleList(
            GaussianLayer(self.layers[i + 1], widths[i + 1], self.layers[i]) for i in range(len(self.layers) - 1)
        )
        self.register_buffer("zeros", torch.zeros(self.layers[-1]))

    def _top(self) -> Independent:
        return Independent(Normal(self.zeros, torch.ones_like(self.zeros), validate_args=False), 1, validate_args=False)

    def forward(self):
        if not self.stages:
            return self._top()
        names = [f"z{i + 1}" for i in range(len(self.layers))]
        steps = [(names[-1], lambda parts: self._top())]
        for i in reversed(range(len(self.stages))):
            steps.append((names[i], lambda parts, i=i: self.stages[i](parts[names[i + 1]])))
        return zoo.Chain(dict(zip(names, self.layers)), steps)
