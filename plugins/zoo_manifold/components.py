"""The manifold plugin's components: a von Mises-Fisher encoder and the uniform prior on the
sphere (hyperspherical VAE), and a wrapped normal encoder, prior and decoder on the Poincare ball
(Poincare VAE). The networks are zoo's ``conv`` layers with heads of their own."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

import zoo
from zoo_aevb.components import ImageConvDecoder, ImageConvEncoder
from zoo_manifold.poincare import WrappedNormal, check_curvature, expmap0, logmap0
from zoo_manifold.vmf import HypersphericalUniform, VonMisesFisher


class _ConvHead(ImageConvEncoder):
    """The ``conv`` encoder's layers, the last conv giving ``outputs`` numbers per image."""

    def _replace_head(self, outputs: int) -> None:
        last = self.net[-1]
        self.net[-1] = nn.Conv2d(last.in_channels, outputs, last.kernel_size)

    def features(self, x: Tensor) -> Tensor:
        out = self.net(x).flatten(1)
        return out.to(torch.promote_types(out.dtype, torch.float32))  # the distribution in float32 at least


class SphereConvEncoder(_ConvHead):
    """x -> vMF(mu, kappa) on the unit sphere S^(L-1) in R^L (Davidson et al. 2018): the ``conv``
    layers give L + 1 numbers, the first L normalised to the mean direction mu, the last through
    softplus + 1 to the concentration kappa (at least 1, as the authors' code). The vMF's Bessel
    function and its rejection sampler run on the host, so the model trains without CUDA graphs."""

    cuda_graph_safe = False
    partners = {"prior": "uniform-sphere"}

    def __init__(
        self, latent_size: int, data_shape: tuple[int, ...] = (1, 28, 28), channels: int = 16, downsamplings: int = 2
    ) -> None:
        if latent_size < 2:
            raise zoo.ZooError(f"a hyperspherical latent needs latent_size >= 2 (S^(L-1) in R^L), got {latent_size}")
        super().__init__(latent_size, data_shape, channels=channels, downsamplings=downsamplings)
        self._replace_head(latent_size + 1)

    @classmethod
    def _id(cls) -> str:
        return "svae-conv"

    def forward(self, x: Tensor) -> VonMisesFisher:
        out = self.features(x)
        direction, raw = out[:, :-1], out[:, -1]
        loc = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return VonMisesFisher(loc, nn.functional.softplus(raw) + 1)


class UniformSpherePrior(zoo.Prior):
    """p(z) = the uniform distribution on the unit sphere S^(L-1) in R^L (Davidson et al. 2018):
    log p(z) is the constant -log(area of S^(L-1)). No options."""

    def __init__(self, latent_size: int) -> None:
        super().__init__()
        if latent_size < 2:
            raise zoo.ZooError(f"the uniform prior on a sphere needs latent_size >= 2, got {latent_size}")
        self.latent_size = latent_size
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # its device and dtype

    def forward(self) -> HypersphericalUniform:
        return HypersphericalUniform(self.latent_size, self.anchor)


class WrappedNormalPrior(zoo.Prior):
    """p(z) = the wrapped normal N^W(0, ``scale``^2 I) on the Poincare ball of curvature -``c``
    (Mathieu et al. 2019). ``c`` is the model's curvature: the ``pvae-conv`` encoder and decoder
    read it from here."""

    def __init__(self, latent_size: int, c: float = 1.0, scale: float = 1.0) -> None:
        super().__init__()
        self.curvature = check_curvature(c)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
            raise zoo.ZooError(f"wrapped-normal scale must be a positive number (got {scale!r})")
        self.latent_size = latent_size
        self.register_buffer("loc", torch.zeros(latent_size), persistent=False)
        self.register_buffer("scale", torch.full((latent_size,), float(scale)), persistent=False)

    def forward(self) -> WrappedNormal:
        return WrappedNormal(self.loc, self.scale, self.curvature)


def _curvature_of(prior: zoo.Prior, what: str) -> float:
    curvature = getattr(prior, "curvature", None)
    if curvature is None:
        raise zoo.ZooError(f"{what} takes its curvature from a 'wrapped-normal' prior, got {type(prior).__name__}")
    return curvature


class PoincareConvEncoder(_ConvHead):
    """x -> N^W(mu, diag(sigma^2)) on the Poincare ball (Mathieu et al. 2019): the ``conv`` layers
    give 2L numbers, the first L mapped onto the ball by exp_0 to give mu, the other L through
    softplus (+ 1e-5) to give sigma, at most the prior's scale. The curvature is the
    ``wrapped-normal`` prior's ``c``."""

    partners = {"prior": "wrapped-normal"}

    def __init__(
        self,
        latent_size: int,
        prior: zoo.Prior,
        data_shape: tuple[int, ...] = (1, 28, 28),
        channels: int = 16,
        downsamplings: int = 2,
    ) -> None:
        super().__init__(latent_size, data_shape, channels=channels, downsamplings=downsamplings)
        self.prior = prior
        self.curvature = _curvature_of(prior, "the pvae-conv encoder")
        self.widest = float(prior().scale.max())

    @classmethod
    def _id(cls) -> str:
        return "pvae-conv"

    def forward(self, x: Tensor) -> WrappedNormal:
        tangent, raw = self.features(x).chunk(2, dim=-1)
        loc = expmap0(tangent, self.curvature)
        # Never wider than the prior: a draw that would land beyond the ball's representable edge is
        # moved inside it, and a posterior that sent many there would be scored at the wrong points.
        scale = torch.clamp(nn.functional.softplus(raw) + 1e-5, max=self.widest)
        return WrappedNormal(loc, scale, self.curvature)


class PoincareConvDecoder(ImageConvDecoder):
    """z on the Poincare ball -> log_0(z) -> the ``conv`` decoder: Mathieu et al.'s "wrapped"
    decoder, which reads a point through the logarithmic map at the origin. The curvature is the
    ``wrapped-normal`` prior's ``c``."""

    partners = {"prior": "wrapped-normal"}

    def __init__(
        self,
        latent_size: int,
        prior: zoo.Prior,
        output_shape: tuple[int, ...] = (1, 28, 28),
        channels: int = 16,
        downsamplings: int = 2,
    ) -> None:
        super().__init__(latent_size, output_shape, channels=channels, downsamplings=downsamplings)
        self.prior = prior
        self.curvature = _curvature_of(prior, "the pvae-conv decoder")

    @classmethod
    def _id(cls) -> str:
        return "pvae-conv"

    def decode(self, z: Tensor) -> Tensor:
        return super().decode(logmap0(z, self.curvature))
