"""Components of the reference plugin: the seed's conv networks for images of any shape, Kingma & Welling's
MLPs, priors and likelihoods, built on zoo's public interfaces and torch.distributions."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    ContinuousBernoulli,
    Independent,
    MixtureSameFamily,
    Normal,
)

import zoo
from zoo_aevb.fast_paths import (
    LogBernoulli,
    SingleChannelConv,
    StrideTwoTransposedConv,
    conv_fast_path_fits,
    transposed_fast_path_fits,
)
from zoo_aevb.fast_paths import cpu_fast_path as _cpu_fast_path  # a module global: tests and benchmarks switch it off


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise zoo.ZooError(f"{name} must be a positive integer (got {value!r})")
    return value


def image_shape(what: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``shape`` as (channels, height, width), or a ZooError naming the shapes ``what`` takes."""
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise zoo.ZooError(
            f"{what} takes images shaped [channels, height, width] (e.g. (1, 28, 28) or (3, 32, 32)), "
            f"got {tuple(shape)}; use an MLP network for other data"
        )
    return shape


def downsampled_sizes(what: str, height: int, width: int, downsamplings: int) -> list[tuple[int, int]]:
    """The map's (height, width) before and after each 3x3, stride-2, padding-1 convolution:
    ``downsamplings + 1`` sizes, the image's first. Each conv takes a side s to (s + 1) // 2, so a
    side is at least ``2 ** downsamplings`` for every conv to halve something."""
    _positive("downsamplings", downsamplings)
    smallest = 2**downsamplings
    if height < smallest or width < smallest:
        most = min(height, width).bit_length() - 1
        advice = f"set downsamplings to at most {most}" if most >= 1 else "use an MLP network"
        raise zoo.ZooError(
            f"{what} with downsamplings={downsamplings} takes images of at least {smallest}x{smallest} pixels, "
            f"got {height}x{width}; {advice}"
        )
    sizes = [(height, width)]
    for _ in range(downsamplings):
        h, w = sizes[-1]
        sizes.append(((h - 1) // 2 + 1, (w - 1) // 2 + 1))
    return sizes


def _widths(channels: int, downsamplings: int) -> list[int]:
    """Channels after each stride-2 conv: ``channels``, doubled at every step (16, 32 in the seed)."""
    return [channels * 2**i for i in range(downsamplings)]


class ConvEncoder(zoo.Encoder):
    """The seed's encoder: stride-2 convs then one conv covering the remaining map.

    ``downsamplings`` 3x3, stride-2 convs (2 in the seed: 28 -> 14 -> 7), ``channels`` wide and
    doubling at each (16, 32), ReLU between them; the last conv covers the whole remaining map. It
    takes images of any channels, height and width (each side at least ``2 ** downsamplings``).
    The output has ``2 * latent_size`` channels: the first half is the mean of q(z|x), the second
    half its log-variance.
    """

    def __init__(
        self,
        latent_size: int,
        data_shape: tuple[int, ...] = (1, 28, 28),
        channels: int = 16,
        downsamplings: int = 2,
    ) -> None:
        super().__init__()
        _positive("channels", channels)
        self.latent_size = latent_size
        in_channels, height, width = image_shape(f"the {self._id()} encoder", tuple(data_shape))
        h, w = downsampled_sizes(f"the {self._id()} encoder", height, width, downsamplings)[-1]
        widths = _widths(channels, downsamplings)
        layers: list[nn.Module] = []
        for inputs, outputs in zip([in_channels, *widths], widths):
            layers += [nn.Conv2d(inputs, outputs, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(widths[-1], 2 * latent_size, (h, w)))
        self.net = nn.Sequential(*layers)

    @classmethod
    def _id(cls) -> str:
        return "conv-mnist"

    def forward(self, x: Tensor) -> Independent:
        first = self.net[0]
        if conv_fast_path_fits(first) and _cpu_fast_path(x, first):
            h = SingleChannelConv.apply(x, first.weight, first.bias, first.stride, first.padding)
        else:
            h = first(x)
        h = self.net[1:-1](h)
        # The last conv covers the whole feature map, so it is a matrix product; computing it as
        # one (with the conv's own weights) is ~1.2x faster on CPU than the convolution path.
        # Both are flattened height, width, channel: for a channels-last map that is a view, and the
        # gradient flowing back is channels-last too, like the ReLU it meets (mixed layouts there
        # make the ReLU's backward ~10x slower).
        last = self.net[-1]
        weight = last.weight.permute(0, 2, 3, 1).reshape(last.out_channels, -1)
        out = nn.functional.linear(h.permute(0, 2, 3, 1).reshape(h.shape[0], -1), weight, last.bias)
        mean, log_var = out.chunk(2, dim=1)
        return zoo.diagonal_gaussian(mean, log_var)  # in fp32 under mixed precision: the KL term stays exact


class ConvDecoder(zoo.Decoder):
    """The seed's decoder: a transposed conv from z to the encoder's smallest map, then stride-2
    transposed convs back to the image's size (7 -> 14 -> 28 in the seed).

    It mirrors :class:`ConvEncoder` with the same ``channels`` and ``downsamplings``. Each 3x3,
    stride-2 transposed conv doubles a side and its output padding (0 or 1) adds the row or column
    the encoder's conv rounded away, so the output is exactly ``output_shape`` (asked of the
    likelihood: one logit per pixel and channel for a Bernoulli) for any height and width.
    """

    def __init__(
        self,
        latent_size: int,
        output_shape: tuple[int, ...] = (1, 28, 28),
        channels: int = 16,
        downsamplings: int = 2,
    ) -> None:
        super().__init__()
        _positive("channels", channels)
        self.latent_size = latent_size
        self.output_shape = tuple(output_shape)
        out_channels, height, width = image_shape(f"the {self._id()} decoder", self.output_shape)
        sizes = downsampled_sizes(f"the {self._id()} decoder", height, width, downsamplings)
        widths = _widths(channels, downsamplings)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_size, widths[-1], sizes[-1]), nn.ReLU(inplace=True)]
        targets = [*widths[:-1][::-1], out_channels]  # channels after each transposed conv
        for i, (inputs, outputs) in enumerate(zip(widths[::-1], targets)):
            (big_h, big_w), (small_h, small_w) = sizes[-2 - i], sizes[-1 - i]
            padding = (big_h - (2 * small_h - 1), big_w - (2 * small_w - 1))  # 3x3/s2/p1 gives 2s - 1 + padding
            layers.append(nn.ConvTranspose2d(inputs, outputs, 3, stride=2, padding=1, output_padding=padding))
            layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers[:-1])

    @classmethod
    def _id(cls) -> str:
        return "conv-mnist"

    def decode(self, z: Tensor) -> Tensor:
        # The first transposed conv acts on a 1x1 map: a matrix product with its own weights,
        # produced directly in channels-last layout for the convolutions that follow.
        first = self.net[0]
        latent, channels, kh, kw = first.weight.shape
        weight = first.weight.permute(0, 2, 3, 1).reshape(latent, kh * kw * channels)
        h = (z.to(weight.dtype) @ weight).view(-1, kh, kw, channels).add(first.bias).permute(0, 3, 1, 2)
        # Not in place: an in-place ReLU on this permuted view sends its gradient back in the other
        # layout, and the ReLU's backward on mixed layouts is ~10x slower.
        h = nn.functional.relu(h)
        h = self.net[2:-1](h)
        last = self.net[-1]
        if transposed_fast_path_fits(last) and _cpu_fast_path(h, last):
            return StrideTwoTransposedConv.apply(h, last.weight, last.bias)
        return last(h)


class ImageConvEncoder(ConvEncoder):
    """:class:`ConvEncoder` under the generic id ``conv`` (the same network; its own class so that
    an object built here is recorded as ``conv``, and one of :class:`ConvEncoder` as ``conv-mnist``)."""

    @classmethod
    def _id(cls) -> str:
        return "conv"


class ImageConvDecoder(ConvDecoder):
    """:class:`ConvDecoder` under the generic id ``conv`` (see :class:`ImageConvEncoder`)."""

    @classmethod
    def _id(cls) -> str:
        return "conv"


class MLPEncoder(zoo.Encoder):
    """Kingma & Welling's Gaussian MLP encoder (AEVB, appendix C.2): x -> ``hidden`` tanh units ->
    mean and log-variance of a diagonal Gaussian q(z|x). 500 units for MNIST in the paper, 200 for
    Frey Face. It flattens the data, so it takes any shape."""

    def __init__(self, latent_size: int, data_shape: tuple[int, ...] = (1, 28, 28), hidden: int = 500) -> None:
        super().__init__()
        _positive("hidden", hidden)
        self.latent_size = latent_size
        self.net = nn.Sequential(nn.Flatten(), *zoo.mlp([math.prod(data_shape), hidden, 2 * latent_size]))

    def forward(self, x: Tensor) -> Independent:
        mean, log_var = self.net(x).chunk(2, dim=1)
        return zoo.diagonal_gaussian(mean, log_var)


class MLPDecoder(zoo.Decoder):
    """The AEVB paper's MLP decoder: z -> ``hidden`` tanh units -> ``output_shape`` (a Bernoulli's
    logits, or a Gaussian's mean and scale per pixel when the likelihood learns its variance)."""

    def __init__(self, latent_size: int, output_shape: tuple[int, ...] = (1, 28, 28), hidden: int = 500) -> None:
        super().__init__()
        _positive("hidden", hidden)
        self.latent_size = latent_size
        self.output_shape = tuple(output_shape)
        self.net = zoo.mlp([latent_size, hidden, math.prod(self.output_shape)])

    def decode(self, z: Tensor) -> Tensor:
        return self.net(z).view(len(z), *self.output_shape)


class StandardNormalPrior(zoo.Prior):
    """p(z) = N(0, I)."""

    def __init__(self, latent_size: int) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.register_buffer("loc", torch.zeros(latent_size), persistent=False)
        self.register_buffer("scale", torch.ones(latent_size), persistent=False)

    def forward(self) -> Independent:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1, validate_args=False)


class MixtureOfGaussiansPrior(zoo.Prior):
    """A learnable mixture of ``components`` diagonal Gaussians. torch has no analytic KL for
    it, so the ELBO takes the Monte-Carlo path."""

    def __init__(self, latent_size: int, components: int = 10) -> None:
        super().__init__()
        _positive("components", components)
        self.latent_size = latent_size
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.randn(components, latent_size))
        self.log_scales = nn.Parameter(torch.zeros(components, latent_size))

    def forward(self) -> MixtureSameFamily:
        components = Independent(Normal(self.means, self.log_scales.exp(), validate_args=False), 1)
        return MixtureSameFamily(Categorical(logits=self.logits, validate_args=False), components, validate_args=False)


class BernoulliLikelihood(zoo.Likelihood):
    """Independent Bernoulli per pixel, parameterised by logits (stable under autocast)."""

    support = (0.0, 1.0)

    def __init__(self, data_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        super().__init__()
        self.event_dims = len(data_shape)

    def forward(self, logits: Tensor) -> Independent:
        logits = logits.float()
        # On the CPU its log-probability avoids torch's slow AVX-512 log1p (zoo_aevb/fast_paths.py)
        family = LogBernoulli if _cpu_fast_path(logits) else Bernoulli
        return Independent(family(logits=logits, validate_args=False), self.event_dims, validate_args=False)


class ContinuousBernoulliLikelihood(zoo.Likelihood):
    """Continuous Bernoulli per pixel: the normalised density for data in [0, 1]."""

    support = (0.0, 1.0)

    def __init__(self, data_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        super().__init__()
        self.event_dims = len(data_shape)

    def forward(self, logits: Tensor) -> Independent:
        dist = ContinuousBernoulli(logits=logits.float(), validate_args=False)
        return Independent(dist, self.event_dims, validate_args=False)


class GaussianLikelihood(zoo.Likelihood):
    """Independent Gaussian per pixel and channel. ``variance='fixed'`` uses ``scale`` for every
    pixel; ``variance='learned'`` has the decoder output a scale per pixel and channel too (twice
    the channels; scale = softplus(output) + 0.001). ``mean='sigmoid'`` squashes the decoder's mean
    into (0, 1), as Kingma & Welling's Frey Face decoder does; ``'identity'`` leaves it as it is."""

    def __init__(
        self,
        data_shape: tuple[int, ...] = (1, 28, 28),
        variance: str = "fixed",
        scale: float = 0.1,
        mean: str = "identity",
    ) -> None:
        super().__init__()
        if variance not in ("fixed", "learned"):
            raise zoo.ZooError(f"gaussian variance must be 'fixed' or 'learned' (got {variance!r})")
        if scale <= 0:
            raise zoo.ZooError(f"gaussian scale must be positive (got {scale})")
        if mean not in ("identity", "sigmoid"):
            raise zoo.ZooError(f"gaussian mean must be 'identity' or 'sigmoid' (got {mean!r})")
        self.event_dims = len(data_shape)
        self.learned = variance == "learned"
        self.scale = scale
        self.squash = mean == "sigmoid"

    def param_shape(self, data_shape):
        channels, *rest = data_shape
        return (2 * channels, *rest) if self.learned else tuple(data_shape)

    def forward(self, params: Tensor) -> Independent:
        params = params.float()
        if self.learned:
            channel_dim = params.ndim - self.event_dims
            mean, log_scale = params.chunk(2, dim=channel_dim)
            scale = nn.functional.softplus(log_scale) + 1e-3
        else:
            mean, scale = params, torch.full_like(params, self.scale)
        if self.squash:
            mean = torch.sigmoid(mean)
        return Independent(Normal(mean, scale, validate_args=False), self.event_dims, validate_args=False)
