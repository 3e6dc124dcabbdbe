"""A residual convolutional encoder and decoder (He et al., "Identity Mappings in Deep Residual
Networks", ECCV 2016: pre-activation blocks) and the discretized logistic likelihoods of
PixelCNN++ (Salimans et al. 2017) for 8-bit grey levels in [0, 1].

The networks work at three resolutions, H x W, H/2 x W/2 and H/4 x W/4 (28 -> 14 -> 7 for
MNIST), doubling the channels at each step down. The decoder mirrors the encoder and produces
``output_shape``, whatever number of channels the likelihood asks for.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.distributions import Independent

import zoo
from zoo_resnet.distributions import BINS, DiscretizedLogistic, DiscretizedLogisticMixture


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


def _check_sizes(what: str, shape: tuple[int, ...], channels: int, blocks: int) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise zoo.ZooError(f"the resnet {what} needs [channels, height, width] images, got shape {tuple(shape)}")
    c, h, w = shape
    if h % 4 or w % 4:
        raise zoo.ZooError(f"the resnet {what} needs height and width divisible by 4, got {h}x{w}")
    if channels < 1 or blocks < 0:
        raise zoo.ZooError(f"the resnet {what} needs channels >= 1 and blocks >= 0 (got {channels}, {blocks})")
    return c, h, w


class ResNetEncoder(zoo.Encoder):
    """x -> residual stages at full, half and quarter size (``channels``, 2x, 4x) -> diagonal Gaussian q(z|x).

    Each stage has ``blocks`` residual blocks; a 4x4 stride-2 convolution halves the size between
    stages, and a linear layer maps the last feature map to the mean and log-variance.
    """

    def __init__(
        self, latent_size: int, data_shape: tuple[int, ...] = (1, 28, 28), channels: int = 32, blocks: int = 2
    ) -> None:
        super().__init__()
        self.latent_size = latent_size
        in_channels, h, w = _check_sizes("encoder", data_shape, channels, blocks)
        widths = [channels, 2 * channels, 4 * channels]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.Conv2d(widths[i - 1], width, 4, stride=2, padding=1))
            layers += [ResidualBlock(width) for _ in range(blocks)]
        layers += [nn.SiLU(), nn.Flatten(), nn.Linear(widths[-1] * (h // 4) * (w // 4), 2 * latent_size)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Independent:
        mean, log_var = self.net(x).chunk(2, dim=1)
        return zoo.diagonal_gaussian(mean, log_var)


class ResNetDecoder(zoo.Decoder):
    """z -> a quarter-size map of 4x ``channels`` -> residual stages, upsampled by 4x4 stride-2
    transposed convolutions -> a 3x3 convolution to ``output_shape``'s channels."""

    def __init__(
        self, latent_size: int, output_shape: tuple[int, ...] = (1, 28, 28), channels: int = 32, blocks: int = 2
    ) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.output_shape = tuple(output_shape)
        out_channels, h, w = _check_sizes("decoder", self.output_shape, channels, blocks)
        widths = [4 * channels, 2 * channels, channels]
        layers: list[nn.Module] = [
            nn.Linear(latent_size, widths[0] * (h // 4) * (w // 4)),
            nn.Unflatten(1, (widths[0], h // 4, w // 4)),
        ]
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.ConvTranspose2d(widths[i - 1], width, 4, stride=2, padding=1))
            layers += [ResidualBlock(width) for _ in range(blocks)]
        layers += [nn.SiLU(), nn.Conv2d(widths[-1], out_channels, 3, padding=1)]
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
    """A mixture of ``components`` discretized logistics per pixel and channel (PixelCNN++, whose
    grey-level case this is; colour channels are modelled independently, without PixelCNN++'s
    linear coupling of the channel means).

    The decoder produces 3 x ``components`` numbers per channel: mixture logits, locations and
    log-scales.
    """

    support = (0.0, 1.0)
    #: 8-bit grey levels, k / 255: the likelihood puts all its mass on these (the conformance kit checks it).
    levels = 256

    def __init__(self, data_shape: tuple[int, ...] = (1, 28, 28), components: int = 10) -> None:
        super().__init__()
        if components < 1:
            raise zoo.ZooError(f"discretized-logistic-mixture needs at least 1 component (got {components})")
        self.event_dims = len(data_shape)
        self.components = components

    def param_shape(self, data_shape):
        channels, *rest = data_shape
        return (3 * self.components * channels, *rest)

    def forward(self, params: Tensor) -> DiscretizedLogisticMixture:
        params = params.float()
        split = params.dim() - self.event_dims
        lead, (param_channels, *rest) = params.shape[:split], params.shape[split:]
        grouped = params.reshape(*lead, 3, self.components, param_channels // (3 * self.components), *rest)
        logits, loc, log_scale = grouped.unbind(split)  # each [*lead, K, channels, *rest]
        return DiscretizedLogisticMixture(logits, loc, log_scale, self.event_dims, BINS)
