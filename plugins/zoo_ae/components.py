"""Deterministic encoders: the reference plugin's conv and MLP networks with a latent head that
predicts the code alone (no variance), returning a :class:`zoo.PointMass`.

They keep the shape rules of :mod:`zoo_aevb.components` (any channels, height and width for the
conv net; any shape for the MLP) and are paired with that plugin's decoders.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

import zoo
from zoo_aevb import components as reference
from zoo_aevb.components import ConvEncoder, MLPEncoder
from zoo_aevb.fast_paths import SingleChannelConv, conv_fast_path_fits


def _code(values: Tensor) -> zoo.PointMass:
    """The code as a point mass, in at least float32 (under autocast too), as the Gaussian heads are."""
    return zoo.PointMass(values.to(torch.promote_types(values.dtype, torch.float32)))


class AEConvEncoder(ConvEncoder):
    """The reference conv encoder (stride-2 3x3 convs, ``channels`` wide and doubling,
    ``downsamplings`` of them, then one conv covering the remaining map) whose last conv outputs
    the ``latent_size`` numbers of the code: x -> z, deterministic.

    It takes images of any channels, height and width (each side at least ``2 ** downsamplings``).
    """

    deterministic = True

    def __init__(
        self,
        latent_size: int,
        data_shape: tuple[int, ...] = (1, 28, 28),
        channels: int = 16,
        downsamplings: int = 2,
    ) -> None:
        super().__init__(latent_size, data_shape, channels, downsamplings)
        head = self.net[-1]
        self.net[-1] = nn.Conv2d(head.in_channels, latent_size, head.kernel_size)

    @classmethod
    def _id(cls) -> str:
        return "ae-conv"

    def forward(self, x: Tensor) -> zoo.PointMass:
        first = self.net[0]
        if conv_fast_path_fits(first) and reference._cpu_fast_path(x, first):  # the reference encoder's
            h = SingleChannelConv.apply(x, first.weight, first.bias, first.stride, first.padding)
        else:
            h = first(x)
        h = self.net[1:-1](h)
        # The last conv covers the whole map: a matrix product with its own weights, as in the
        # reference encoder (flattened height, width, channel, a view for a channels-last map).
        last = self.net[-1]
        weight = last.weight.permute(0, 2, 3, 1).reshape(last.out_channels, -1)
        code = nn.functional.linear(h.permute(0, 2, 3, 1).reshape(h.shape[0], -1), weight, last.bias)
        return _code(code)


class AEMLPEncoder(MLPEncoder):
    """The reference MLP encoder (x -> ``hidden`` tanh units) with a linear head to the
    ``latent_size`` numbers of the code: deterministic. It flattens the data, so it takes any shape."""

    deterministic = True

    def __init__(self, latent_size: int, data_shape: tuple[int, ...] = (1, 28, 28), hidden: int = 500) -> None:
        super().__init__(latent_size, data_shape, hidden)
        self.net = nn.Sequential(nn.Flatten(), *zoo.mlp([math.prod(data_shape), hidden, latent_size]))

    def forward(self, x: Tensor) -> zoo.PointMass:
        return _code(self.net(x))
