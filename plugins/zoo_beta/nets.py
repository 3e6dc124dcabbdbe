"""The standard convolutional networks of the disentanglement literature (Burgess et al. 2018,
appendix; disentanglement_lib's "conv encoder"), for images of any size.

Encoder: four 4x4, stride-2 convolutions of 32, 32, 64 and 64 channels with ReLU, a dense layer
of 256 units, then a dense layer to the mean and log-variance of a diagonal Gaussian q(z|x). The
decoder mirrors it: dense 256, dense to the last map, four 4x4 stride-2 transposed convolutions
(64, 32, 32, then the likelihood's channels). On 64x64 images (dSprites) the maps are 32, 16, 8
and 4 pixels wide, the published network exactly. Other sizes are padded as TensorFlow's "same"
padding does (each conv takes a side s to ceil(s / 2), the odd pixel padded at the end), and the
decoder crops each transposed conv's output back to the encoder's size at that depth, so any
[C, H, W] image works: 28x28 goes 14, 7, 4, 2.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.distributions import Independent

import zoo

#: Channels of the four stride-2 convolutions.
CHANNELS = (32, 32, 64, 64)


def _image_shape(what: str, shape) -> tuple[int, int, int]:
    shape = tuple(shape)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise zoo.ZooError(
            f"{what} takes images shaped [channels, height, width] of any size (64x64 for dSprites, 28x28 for "
            f"MNIST), got {shape}; use an MLP network for other data"
        )
    return shape


def _sides(side: int) -> list[int]:
    """A side before and after each stride-2 convolution (ceil halving): 64 -> 32, 16, 8, 4."""
    sides = [side]
    for _ in CHANNELS:
        sides.append((sides[-1] + 1) // 2)
    return sides


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise zoo.ZooError(f"{name} must be a positive integer (got {value!r})")
    return value


class BurgessConvEncoder(zoo.Encoder):
    """Burgess et al. (2018)'s encoder: conv 32, 32, 64, 64 (4x4, stride 2, ReLU), dense ``hidden``
    (256), then the mean and log-variance of a diagonal Gaussian q(z|x) over ``latent_size`` dimensions."""

    def __init__(self, latent_size: int, data_shape: tuple[int, ...] = (1, 64, 64), hidden: int = 256) -> None:
        super().__init__()
        self.latent_size = latent_size
        _positive("hidden", hidden)
        channels, height, width = _image_shape("the burgess-conv encoder", data_shape)
        hs, ws = _sides(height), _sides(width)
        layers: list[nn.Module] = []
        for i, (inputs, outputs) in enumerate(zip((channels, *CHANNELS), CHANNELS)):
            # TensorFlow's "same" padding for a 4x4, stride-2 kernel: 1 before, 1 or 2 after.
            layers += [
                nn.ZeroPad2d((1, 1 + ws[i] % 2, 1, 1 + hs[i] % 2)),
                nn.Conv2d(inputs, outputs, 4, stride=2),
                nn.ReLU(inplace=True),
            ]
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(CHANNELS[-1] * hs[-1] * ws[-1], hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 2 * latent_size),
        )

    def forward(self, x: Tensor) -> Independent:
        mean, log_var = self.head(self.convs(x)).chunk(2, dim=-1)
        return zoo.diagonal_gaussian(mean, log_var)


class BurgessConvDecoder(zoo.Decoder):
    """The mirror of :class:`BurgessConvEncoder`: dense ``hidden`` (256), dense to a 64-channel map,
    transposed convs 64, 32, 32 and the likelihood's channels (4x4, stride 2), each cropped to the
    encoder's size at that depth, so the output is exactly ``output_shape``."""

    def __init__(self, latent_size: int, output_shape: tuple[int, ...] = (1, 64, 64), hidden: int = 256) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.output_shape = tuple(output_shape)
        _positive("hidden", hidden)
        channels, height, width = _image_shape("the burgess-conv decoder", self.output_shape)
        self.hs, self.ws = _sides(height), _sides(width)
        self.smallest = (CHANNELS[-1], self.hs[-1], self.ws[-1])
        self.dense = nn.Sequential(
            nn.Linear(latent_size, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, CHANNELS[-1] * self.hs[-1] * self.ws[-1]),
            nn.ReLU(inplace=True),
        )
        outs = (*CHANNELS[::-1][1:], channels)  # 64, 32, 32, C
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(inputs, outputs, 4, stride=2, padding=1) for inputs, outputs in zip(CHANNELS[::-1], outs)
        )

    def decode(self, z: Tensor) -> Tensor:
        h = self.dense(z).view(z.shape[0], *self.smallest)
        depth = len(self.deconvs)
        for i, deconv in enumerate(self.deconvs):
            # Each doubles a side; crop the pixel the encoder's ceil halving added at this depth.
            h = deconv(h)[..., : self.hs[depth - 1 - i], : self.ws[depth - 1 - i]]
            if i < depth - 1:
                h = nn.functional.relu(h)
        return h
