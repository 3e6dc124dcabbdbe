"""The kit's deterministic encoder: objectives that need no density of q(z|x) (``needs_density =
False``, an autoencoder's) are checked on a model whose encoder returns a :class:`zoo.PointMass`."""

from __future__ import annotations

from torch import Tensor

import zoo
from zoo.distributions import PointMass
from zoo.interfaces import Encoder


class PointMassEncoder(Encoder):
    """The mean of a stochastic encoder ``inner`` as a deterministic code."""

    deterministic = True

    def __init__(self, inner: Encoder) -> None:
        super().__init__()
        self.inner = inner
        self.latent_size = inner.latent_size

    def forward(self, x: Tensor) -> PointMass:
        return PointMass(self.inner(x).mean)


def point_mass_model(model: zoo.VAE) -> zoo.VAE:
    """``model`` with :class:`PointMassEncoder` around its encoder, the other components shared."""
    return zoo.compose(
        PointMassEncoder(model.encoder),
        model.decoder,
        model.prior,
        model.likelihood,
        latent_size=model.latent_size,
        data_shape=model.data_shape,
    )
