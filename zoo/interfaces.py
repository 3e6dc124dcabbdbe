"""The four component interfaces every model in the zoo is composed of.

All four are :class:`torch.nn.Module` subclasses, so they carry their own parameters and move
with ``.to(device)``. Each produces or consumes :class:`torch.distributions.Distribution`
objects; the objectives in :mod:`zoo.objectives` need nothing else.

Shapes (B = batch, L = ``latent_size``, D = the data shape, e.g. ``(1, 28, 28)``):

=============  ================================  ==========================================
component      call                              returns
=============  ================================  ==========================================
Encoder        ``encoder(x)``, x: [B, *D]        q(z|x): batch shape [B], event shape [L],
                                                 supports ``rsample``
Decoder        ``decoder(z)``, z: [..., L]       parameters of p(x|z): a tensor shaped
                                                 [..., *likelihood.param_shape(D)]
Prior          ``prior()``                       p(z): event shape [L], empty batch shape
Likelihood     ``likelihood(params)``            p(x|z): ``log_prob(x)`` sums over D
=============  ================================  ==========================================

Decoders accept any number of leading sample/batch dimensions (the importance-weighted bound
decodes [K, B, L]); a decoder may flatten them itself or inherit :meth:`Decoder.forward`, which
flattens them around :meth:`Decoder.decode`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

Shape = tuple[int, ...]


class Encoder(nn.Module):
    """x -> q(z|x).

    Subclasses set ``self.latent_size`` and implement :meth:`forward` returning a distribution
    with batch shape [B] and event shape [latent_size] that supports ``rsample``.
    """

    latent_size: int

    def forward(self, x: Tensor) -> Distribution:  # pragma: no cover - interface
        raise NotImplementedError


class Decoder(nn.Module):
    """z -> parameters of p(x|z).

    Subclasses set ``self.latent_size`` and ``self.output_shape`` (the parameter shape the
    likelihood asked for) and implement :meth:`decode` on a flat batch ``[N, L] -> [N, *output_shape]``.
    """

    latent_size: int
    output_shape: Shape

    def decode(self, z: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        out = self.decode(z.reshape(-1, z.shape[-1]))
        return out.reshape(*lead, *out.shape[1:])


class Prior(nn.Module):
    """p(z). May hold learnable parameters; they are trained with the model.

    Subclasses set ``self.latent_size`` and implement :meth:`forward` returning a distribution
    with event shape [latent_size] (built from the module's parameters and buffers, so it
    lives on the module's device).
    """

    latent_size: int

    def forward(self) -> Distribution:  # pragma: no cover - interface
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z), summed over the latent dimensions."""
        return self().log_prob(z)

    def sample(self, n: int) -> Tensor:
        """``n`` draws from p(z), shaped [n, latent_size]."""
        return self().sample((n,))


class Likelihood(nn.Module):
    """Decoder output -> p(x|z), a distribution whose ``log_prob(x)`` sums over the data dims.

    :meth:`param_shape` tells the decoder how many numbers to produce per data point (a
    Bernoulli needs one logit per pixel, a Gaussian with learned variance two). The returned
    distribution must provide ``log_prob``, ``mean`` and ``sample``.
    """

    #: Data must lie in this closed interval (``None``: any real value).
    support: tuple[float, float] | None = None

    def param_shape(self, data_shape: Sequence[int]) -> Shape:
        """Shape of the decoder output for one data point of ``data_shape``."""
        return tuple(data_shape)

    def forward(self, params: Tensor) -> Distribution:  # pragma: no cover - interface
        raise NotImplementedError

    def check_data(self, x: Tensor) -> None:
        """Raise :class:`zoo.ZooError` when ``x`` is outside the likelihood's support."""
        if self.support is None:
            return
        lo, hi = self.support
        bad = (x < lo) | (x > hi) | torch.isnan(x)
        if bool(bad.any()):
            from zoo.errors import ZooError

            raise ZooError(
                f"data outside [{lo:g}, {hi:g}] for the {type(self).__name__} likelihood "
                f"(min {x.min().item():.4g}, max {x.max().item():.4g}); scale images to [0, 1] "
                "or choose a likelihood for real-valued data"
            )


def num_elements(shape: Sequence[int]) -> int:
    return math.prod(shape)
