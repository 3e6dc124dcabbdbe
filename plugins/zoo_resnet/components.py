"""A residual convolutional encoder and decoder (He et al., "Identity Mappings in Deep Residual
Networks", ECCV 2016: pre-activation blocks) and the discretized logistic likelihoods of
PixelCNN++ (Salimans et al. 2017) for 8-bit grey levels in [0, 1].

The networks work at full resolution and after each of ``downsamplings`` halvings (two by default:
28 -> 14 -> 7 for MNIST, 32 -> 16 -> 8 for CIFAR-10), doubling the channels at each step down, on
images of any channels, height and width. The decoder mirrors the encoder and produces exactly
``output_shape``, whatever number of channels the likelihood asks for.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Independent

import zoo
from zoo_resnet.distributions import (
    BINS,
    CoupledDiscretizedLogisticMixture,
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
)


class ResidualBlock(nn.Module):
    """x + conv(act(conv(act(x)))), 3x3 convolutions keeping the channels and the size."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def _check_sizes(what: str, shape: tuple[int, ...], channels: int, blocks: int, downsamplings: int) -> list[tuple]:
    """The (height, width) of each stage, the image's first: a 4x4, stride-2, padding-1 conv takes a
    side s to s // 2, so every side must be at least ``2 ** downsamplings``."""
    if len(shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise zoo.ZooError(
            f"the resnet {what} takes images shaped [channels, height, width] (e.g. (1, 28, 28) or (3, 32, 32)), "
            f"got {tuple(shape)}; use an MLP network for other data"
        )
    if channels < 1 or blocks < 0 or downsamplings < 1:
        raise zoo.ZooError(
            f"the resnet {what} needs channels >= 1, blocks >= 0 and downsamplings >= 1 "
            f"(got {channels}, {blocks}, {downsamplings})"
        )
    _, h, w = shape
    smallest = 2**downsamplings
    if h < smallest or w < smallest:
        most = min(h, w).bit_length() - 1
        advice = f"set downsamplings to at most {most}" if most >= 1 else "use an MLP network"
        raise zoo.ZooError(
            f"the resnet {what} with downsamplings={downsamplings} takes images of at least {smallest}x{smallest} "
            f"pixels, got {h}x{w}; {advice}"
        )
    sizes = [(h, w)]
    for _ in range(downsamplings):
        sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
    return sizes


class ResNetEncoder(zoo.Encoder):
    """x -> residual stages at full size and after each of ``downsamplings`` halvings (``channels``,
    doubled at each: 32, 64, 128 for two) -> diagonal Gaussian q(z|x).

    Each stage has ``blocks`` residual blocks; a 4x4 stride-2 convolution halves the size between
    stages (rounding down: 28 -> 14 -> 7, 27 -> 13 -> 6), and a linear layer maps the last feature
    map to the mean and log-variance. Any channels, height and width of at least ``2 ** downsamplings``.
    """

    def __init__(
        self,
        latent_size: int,
        data_shape: tuple[int, ...] = (1, 28, 28),
        channels: int = 32,
        blocks: int = 2,
        downsamplings: int = 2,
    ) -> None:
        super().__init__()
        self.latent_size = latent_size
        sizes = _check_sizes("encoder", tuple(data_shape), channels, blocks, downsamplings)
        widths = [channels * 2**i for i in range(downsamplings + 1)]
        layers: list[nn.Module] = [nn.Conv2d(data_shape[0], widths[0], 3, padding=1)]
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.Conv2d(widths[i - 1], width, 4, stride=2, padding=1))
            layers += [ResidualBlock(width) for _ in range(blocks)]
        h, w = sizes[-1]
        layers += [nn.SiLU(), nn.Flatten(), nn.Linear(widths[-1] * h * w, 2 * latent_size)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Independent:
        mean, log_var = self.net(x).chunk(2, dim=1)
        return zoo.diagonal_gaussian(mean, log_var)


class ResNetDecoder(zoo.Decoder):
    """z -> the encoder's smallest map -> residual stages, upsampled by 4x4 stride-2 transposed
    convolutions -> a 3x3 convolution to ``output_shape``'s channels.

    Each transposed conv doubles a side and its output padding (0 or 1) restores the row or column
    the encoder's halving dropped, so the output has exactly the data's height and width.
    """

    def __init__(
        self,
        latent_size: int,
        output_shape: tuple[int, ...] = (1, 28, 28),
        channels: int = 32,
        blocks: int = 2,
        downsamplings: int = 2,
    ) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.output_shape = tuple(output_shape)
        sizes = _check_sizes("decoder", self.output_shape, channels, blocks, downsamplings)[::-1]
        widths = [channels * 2**i for i in range(downsamplings, -1, -1)]
        layers: list[nn.Module] = [
            nn.Linear(latent_size, widths[0] * sizes[0][0] * sizes[0][1]),
            nn.Unflatten(1, (widths[0], *sizes[0])),
        ]
        for i, width in enumerate(widths):
            if i:
                (small_h, small_w), (big_h, big_w) = sizes[i - 1], sizes[i]
                padding = (big_h - 2 * small_h, big_w - 2 * small_w)  # 4x4/s2/p1 gives 2s + padding
                layers.append(nn.ConvTranspose2d(widths[i - 1], width, 4, stride=2, padding=1, output_padding=padding))
            layers += [ResidualBlock(width) for _ in range(blocks)]
        layers += [nn.SiLU(), nn.Conv2d(widths[-1], self.output_shape[0], 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def decode(self, z: Tensor) -> Tensor:
        return self.net(z)


class DiscretizedLogisticLikelihood(zoo.Likelihood):
    """One discretized logistic per pixel (PixelCNN++ with a single component).

    The decoder produces two numbers per pixel and channel: the location (on the [0, 1] scale of
    the data) and the log-scale. ``log_prob`` is a true log-likelihood of the 8-bit image.
    """

    support = (0.0, 1.0)
    #: 8-bit grey levels, k / 255: the likelihood puts all its mass on these (the conformance kit checks it).
    levels = 256

    def __init__(self, data_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        super().__init__()
        self.event_dims = len(data_shape)

    def param_shape(self, data_shape):
        channels, *rest = data_shape
        return (2 * channels, *rest)

    def forward(self, params: Tensor) -> DiscretizedLogistic:
        loc, log_scale = params.float().chunk(2, dim=params.dim() - self.event_dims)
        return DiscretizedLogistic(loc, log_scale, self.event_dims, BINS)


class DiscretizedLogisticMixtureLikelihood(zoo.Likelihood):
    """A mixture of ``components`` discretized logistics per pixel (PixelCNN++, Salimans et al. 2017).

    By default every channel has a mixture of its own and a colour pixel's channels are independent
    given z: the decoder produces 3 x ``components`` numbers per channel (mixture logits, locations,
    log-scales). With ``coupled=True`` the mixture is PixelCNN++'s: one mixture per pixel over its
    channels jointly, whose component draws the channels in order, each location shifted by
    tanh-squashed coefficients times the channels before it (green by red, blue by red and green).
    The decoder then produces, per component, one logit, C locations, C log-scales and C(C-1)/2
    coefficients (10 for RGB); for one channel both are the same model.
    """

    support = (0.0, 1.0)
    #: 8-bit grey levels, k / 255: the likelihood puts all its mass on these (the conformance kit checks it).
    levels = 256

    def __init__(self, data_shape: tuple[int, ...] = (1, 28, 28), components: int = 10, coupled: bool = False) -> None:
        super().__init__()
        if components < 1:
            raise zoo.ZooError(f"discretized-logistic-mixture needs at least 1 component (got {components})")
        if coupled and len(data_shape) != 3:
            raise zoo.ZooError(
                f"discretized-logistic-mixture with coupled=True takes images shaped [channels, height, width], "
                f"got {tuple(data_shape)}; use coupled=False"
            )
        self.event_dims = len(data_shape)
        self.components = components
        self.coupled = coupled

    def param_shape(self, data_shape):
        channels, *rest = data_shape
        if self.coupled:
            return (self.components * (1 + 2 * channels + channels * (channels - 1) // 2), *rest)
        return (3 * self.components * channels, *rest)

    def forward(self, params: Tensor):
        params = params.float()
        split = params.dim() - self.event_dims
        lead, (param_channels, *rest) = params.shape[:split], params.shape[split:]
        k = self.components
        if self.coupled:
            per_component = param_channels // k
            channels = next(c for c in range(1, per_component + 1) if 1 + 2 * c + c * (c - 1) // 2 == per_component)
            logits, loc, log_scale, coeffs = params.split(
                [k, k * channels, k * channels, per_component * k - k - 2 * k * channels], dim=split
            )
            shaped = [t.reshape(*lead, k, -1, *rest) for t in (loc, log_scale, coeffs)]
            return CoupledDiscretizedLogisticMixture(logits, shaped[0], shaped[1], torch.tanh(shaped[2]), BINS)
        grouped = params.reshape(*lead, 3, k, param_channels // (3 * k), *rest)
        logits, loc, log_scale = grouped.unbind(split)  # each [*lead, K, channels, *rest]
        return DiscretizedLogisticMixture(logits, loc, log_scale, self.event_dims, BINS)
