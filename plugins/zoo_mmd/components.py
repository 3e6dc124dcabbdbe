"""The deterministic encoder of the WAE recipes: zoo's conv network with a code, not a Gaussian, as its head."""

from __future__ import annotations

from torch import Tensor, nn

import zoo
from zoo_aevb.components import ImageConvEncoder


class DeterministicConvEncoder(ImageConvEncoder):
    """x -> z: the ``conv`` encoder's layers (``downsamplings`` 3x3 stride-2 convs, ``channels``
    doubling at each, then a conv over the whole remaining map), its last conv giving the
    ``latent_size`` numbers of the code itself. It returns ``zoo.PointMass(code)``
    (``deterministic = True``), the encoder of Tolstikhin et al.'s WAE experiments. Images of any
    shape, as ``conv``."""

    deterministic = True

    def __init__(
        self, latent_size: int, data_shape: tuple[int, ...] = (1, 28, 28), channels: int = 16, downsamplings: int = 2
    ) -> None:
        super().__init__(latent_size, data_shape, channels=channels, downsamplings=downsamplings)
        last = self.net[-1]
        self.net[-1] = nn.Conv2d(last.in_channels, latent_size, last.kernel_size)

    @classmethod
    def _id(cls) -> str:
        return "wae-conv"

    def forward(self, x: Tensor) -> zoo.PointMass:
        return zoo.PointMass(self.net(x).flatten(1))
