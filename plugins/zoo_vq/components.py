"""The VQ-VAE's networks (van den Oord et al. 2017): a conv encoder to a grid of D-dimensional vectors,
each quantised to the nearest of K codebook vectors, and a decoder mirroring it.

The model's latent is the flattened quantised grid, ``latent_size = D * H' * W'``: the encoder derives
D from the latent size and the grid its convs leave. Its code has no density (``zoo.PointMass``), so
the model trains with an autoencoder objective (``ae``); the codebook and commitment losses are the
encoder's own (``add_loss``) and are added to whatever objective trains it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import zoo
from zoo_vq.quantizer import VectorQuantizer


def _positive(name: str, value: object, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise zoo.ZooError(f"{name} must be an integer of at least {least} (got {value!r})")
    return value


def grid_sizes(what: str, shape: tuple[int, ...], downsamplings: int) -> list[tuple[int, int]]:
    """(height, width) of the image and after each stride-2 conv: a side s becomes ceil(s / 2).

    The conv's kernel is 4 along an even side (the paper's 4x4, stride 2) and 3 along an odd one,
    both with padding 1, so the transposed convs of the decoder restore every size exactly."""
    if len(shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise zoo.ZooError(f"{what} takes images shaped [channels, height, width], got {tuple(shape)}")
    _positive("downsamplings", downsamplings)
    _, height, width = shape
    smallest = 2 ** (downsamplings - 1) + 1
    if min(height, width) < smallest:
        raise zoo.ZooError(
            f"{what} with downsamplings={downsamplings} takes images of at least {smallest}x{smallest} pixels, "
            f"got {height}x{width}; set downsamplings lower"
        )
    sizes = [(height, width)]
    for _ in range(downsamplings):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def _kernel(size: tuple[int, int]) -> tuple[int, int]:
    return tuple(4 if s % 2 == 0 else 3 for s in size)


def code_size(what: str, latent_size: int, grid: tuple[int, int]) -> int:
    """D, the size of one code vector: the latent size over the grid's positions."""
    positions = grid[0] * grid[1]
    if latent_size % positions:
        raise zoo.ZooError(
            f"{what}: latent_size ({latent_size}) must be a multiple of the {grid[0]}x{grid[1]} code grid's "
            f"{positions} positions (latent_size = D x {grid[0]} x {grid[1]}, D the codebook vectors' size)"
        )
    return latent_size // positions


def _widths(channels: int, downsamplings: int) -> list[int]:
    """Channels after each stride-2 conv: half of ``channels`` first, then ``channels`` (64, 128, 128)."""
    return [max(1, channels // 2) if i == 0 and downsamplings > 1 else channels for i in range(downsamplings)]


class ResBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))): the paper's residual block."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class VQEncoder(zoo.Encoder):
    """x -> stride-2 convs -> residual blocks -> 1x1 conv to D -> nearest codebook vectors.

    ``downsamplings`` stride-2 convs (3: 28 -> 14 -> 7 -> 4, pythae's MNIST network) of ``channels``
    (half at the first), ReLU between, ``res_blocks`` residual blocks with ``res_channels`` inside,
    and a 1x1 conv to D = latent_size / (H' x W') channels. Each of the H' x W' vectors is replaced by
    the nearest of ``codebook_size`` codebook vectors (the straight-through estimator carries the
    decoder's gradient to the encoder). Adds the losses ``codebook`` (||sg[h] - e||^2) and
    ``commitment`` (``beta`` ||h - sg[e]||^2), summed over the grid per image. The codebook starts as
    vectors of the first training batch. ``ema=True`` updates the codebook as
    moving averages (decay ``decay``) instead of by its loss. Returns ``zoo.PointMass`` of the
    flattened quantised grid (channel-major, [D, H', W']).
    """

    deterministic = True

    def __init__(
        self,
        latent_size: int,
        data_shape: tuple[int, ...],
        codebook_size: int = 512,
        channels: int = 128,
        downsamplings: int = 3,
        res_blocks: int = 2,
        res_channels: int = 32,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
    ) -> None:
        super().__init__()
        what = "the vq-conv encoder"
        sizes = grid_sizes(what, tuple(data_shape), downsamplings)
        _positive("channels", channels)
        _positive("res_channels", res_channels)
        _positive("res_blocks", res_blocks, least=0)
        if beta < 0:
            raise zoo.ZooError(f"beta must be at least 0 (got {beta})")
        self.latent_size = latent_size
        self.grid = (code_size(what, latent_size, sizes[-1]), *sizes[-1])  # (D, H', W')
        self.beta = float(beta)
        layers: list[nn.Module] = []
        width = data_shape[0]
        for size, out in zip(sizes, _widths(channels, downsamplings)):
            layers += [nn.Conv2d(width, out, _kernel(size), stride=2, padding=1), nn.ReLU()]
            width = out
        layers.pop()  # the residual blocks begin with their own ReLU
        layers += [ResBlock(width, res_channels) for _ in range(res_blocks)]
        layers += [nn.ReLU(), nn.Conv2d(width, self.grid[0], 1)]
        self.net = nn.Sequential(*layers)
        self.quantizer = VectorQuantizer(codebook_size, self.grid[0], ema=ema, decay=decay)

    @property
    def codebook(self) -> Tensor:
        """The K codebook vectors, [K, D]."""
        return self.quantizer.codebook

    def forward(self, x: Tensor) -> zoo.PointMass:
        out = self.quantizer(self.net(x))
        if not self.quantizer.ema:
            self.add_loss("codebook", out.codebook_loss)
        self.add_loss("commitment", self.beta * out.commitment_loss)
        return zoo.PointMass(out.codes.flatten(1))

    @torch.no_grad()
    def indices(self, x: Tensor) -> Tensor:
        """The code indices of images ``x``, [B, H', W'] (long)."""
        return self.quantizer.nearest(self._vectors(self.net(x))).view(len(x), *self.grid[1:])

    @torch.no_grad()
    def indices_of_codes(self, z: Tensor) -> Tensor:
        """The indices of flattened codes ``z`` [N, latent_size] (the nearest entry of each vector)."""
        if z.dim() != 2 or z.shape[1] != self.latent_size:
            raise zoo.ZooError(f"codes must be shaped [N, {self.latent_size}], got {tuple(z.shape)}")
        return self.quantizer.nearest(self._vectors(z.view(len(z), *self.grid))).view(len(z), *self.grid[1:])

    def embed(self, indices: Tensor) -> Tensor:
        """Flattened codes [B, latent_size] of code indices [B, H', W'] (what the decoder takes)."""
        if indices.dim() != 3 or tuple(indices.shape[1:]) != self.grid[1:]:
            raise zoo.ZooError(
                f"code indices must be shaped [B, {self.grid[1]}, {self.grid[2]}], got {tuple(indices.shape)}"
            )
        return self.quantizer.lookup(indices).flatten(1)

    def _vectors(self, grid: Tensor) -> Tensor:
        return grid.permute(0, 2, 3, 1).reshape(-1, self.grid[0]).to(self.codebook.dtype)


class VQDecoder(zoo.Decoder):
    """z -> [D, H', W'] grid -> 1x1 conv -> residual blocks -> stride-2 transposed convs -> parameters.

    It mirrors ``vq-conv``: the same ``downsamplings``, ``channels``, ``res_blocks`` and
    ``res_channels``; it reads the grid from the likelihood's output shape and D from the latent size,
    so it decodes any latent laid out as [D, H', W'] (a VQ encoder's, or a Gaussian's of that size)."""

    def __init__(
        self,
        latent_size: int,
        output_shape: tuple[int, ...],
        channels: int = 128,
        downsamplings: int = 3,
        res_blocks: int = 2,
        res_channels: int = 32,
    ) -> None:
        super().__init__()
        what = "the vq-conv decoder"
        sizes = grid_sizes(what, tuple(output_shape), downsamplings)
        _positive("channels", channels)
        _positive("res_channels", res_channels)
        _positive("res_blocks", res_blocks, least=0)
        self.latent_size = latent_size
        self.output_shape = tuple(output_shape)
        self.grid = (code_size(what, latent_size, sizes[-1]), *sizes[-1])
        widths = _widths(channels, downsamplings)
        layers: list[nn.Module] = [nn.Conv2d(self.grid[0], widths[-1], 1)]
        layers += [ResBlock(widths[-1], res_channels) for _ in range(res_blocks)]
        outs = [*reversed(widths[:-1]), output_shape[0]]
        width = widths[-1]
        for size, out in zip(reversed(sizes[:-1]), outs):
            layers += [nn.ReLU(), nn.ConvTranspose2d(width, out, _kernel(size), stride=2, padding=1)]
            width = out
        self.net = nn.Sequential(*layers)

    def decode(self, z: Tensor) -> Tensor:
        return self.net(z.view(len(z), *self.grid))
