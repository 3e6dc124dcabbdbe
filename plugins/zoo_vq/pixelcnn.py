"""A gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders")
over a VQ-VAE's grid of code indices: the VQ-VAE paper's prior, fitted after the autoencoder.

Its probabilities are a pmf over the K^(H'W') grids of indices, not a density on R^L: the codes a
VQ-VAE's decoder takes lie on a finite set. So ``has_density`` is False (zoo's evaluator reports the
sample-based metrics, not an IW-NLL) and ``log_prob(z)`` refuses; ``log_pmf(indices)`` gives the
log-probability of index grids, in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

import zoo
from zoo.distributions import NoDensityError


class MaskedConv2d(nn.Conv2d):
    """A conv whose kernel is multiplied by a fixed 0/1 mask (kept as a buffer)."""

    def __init__(self, mask: Tensor, in_channels: int, out_channels: int) -> None:
        kh, kw = mask.shape
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2))
        self.register_buffer("mask", mask[None, None].clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def _masks(kernel: int, first: bool) -> tuple[Tensor, Tensor]:
    """The vertical stack's mask (rows above the centre and the centre row) and the horizontal
    stack's (the centre row left of the centre, and the centre itself unless ``first``)."""
    c = kernel // 2
    vertical = torch.zeros(kernel, kernel)
    vertical[: c + 1] = 1
    horizontal = torch.zeros(1, kernel)
    horizontal[0, : c + (0 if first else 1)] = 1
    return vertical, horizontal


class GatedLayer(nn.Module):
    """One gated layer: tanh(a) * sigmoid(b) on a vertical stack (what lies above) and a horizontal
    stack (what lies to the left), the vertical feeding the horizontal one row down, so no position
    sees itself or anything after it in raster order."""

    def __init__(self, channels: int, kernel: int, first: bool) -> None:
        super().__init__()
        vertical, horizontal = _masks(kernel, first)
        self.first = first
        self.vertical = MaskedConv2d(vertical, channels, 2 * channels)
        self.horizontal = MaskedConv2d(horizontal, channels, 2 * channels)
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    @staticmethod
    def _gate(x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        v_out = self.vertical(v)
        above = F.pad(v_out, (0, 0, 1, 0))[:, :, :-1]  # shifted one row down: rows strictly above
        h_out = self.out(self._gate(self.horizontal(h) + self.link(above)))
        return self._gate(v_out), h_out if self.first else h + h_out


class GatedPixelCNN(nn.Module):
    """Index grid [B, H, W] -> logits [B, K, H, W] of each index given those before it (raster order)."""

    def __init__(self, codebook_size: int, channels: int, layers: int, kernel: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, channels)
        self.layers = nn.ModuleList(GatedLayer(channels, kernel if i else 7, first=i == 0) for i in range(layers))
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, codebook_size, 1)
        )

    def forward(self, indices: Tensor) -> Tensor:
        x = self.embedding(indices).permute(0, 3, 1, 2)
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)


class CodeGrid(Distribution):
    """The PixelCNN's distribution over flattened codes: ``sample`` draws index grids ancestrally and
    embeds them; ``log_prob`` refuses (a pmf on a finite set has no density on R^L)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, sampler: PixelCNNPrior) -> None:
        self.sampler = sampler
        super().__init__(torch.Size(), torch.Size([sampler.latent_size]), validate_args=False)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape)
        codes = self.sampler.sample(max(1, math.prod(shape)))
        return codes.view(*shape, self.sampler.latent_size)

    def log_prob(self, value: Tensor) -> Tensor:
        raise NoDensityError(
            "the pixelcnn prior is a pmf over grids of code indices, not a density on the latent space; "
            "use prior.log_pmf(encoder.indices(x)) for the log-probability of codes"
        )


class PixelCNNPrior(zoo.Sampler):
    """A gated PixelCNN over the grid of code indices of the model's VQ encoder, fitted after training.

    ``channels`` wide, ``layers`` gated layers (the first 7x7 and masked to exclude the centre, the
    others ``kernel`` x ``kernel``). ``fit(codes, epochs=20, batch_size=128, lr=1e-3)`` maps each code
    to its indices through the encoder's codebook and maximises their categorical log-likelihood
    with Adam. ``sample(n)`` draws the H' x W' indices one at a time in raster order and embeds them.
    ``has_density`` is False: see the module's docstring.
    """

    has_density = False
    partners = {"encoder": "vq-conv"}  # it reads that encoder's codebook and grid
    cuda_graph_safe = False  # sampling runs a Python loop over the grid

    def __init__(
        self, encoder: zoo.Encoder, latent_size: int, channels: int = 64, layers: int = 8, kernel: int = 3
    ) -> None:
        super().__init__()
        for name in ("codebook", "grid", "indices", "embed", "indices_of_codes"):
            if not hasattr(encoder, name):
                raise zoo.ZooError(
                    f"the pixelcnn prior models a vector-quantised encoder's code indices; the encoder "
                    f"{type(encoder).__name__} has no {name!r} (use the vq-conv encoder)"
                )
        for name, value in (("channels", channels), ("layers", layers), ("kernel", kernel)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise zoo.ZooError(f"{name} must be a positive integer (got {value!r})")
        if kernel % 2 == 0:
            raise zoo.ZooError(f"kernel must be odd (got {kernel})")
        self.latent_size = latent_size
        self.encoder = encoder
        self.grid = tuple(encoder.grid)  # (D, H', W')
        self.codebook_size = int(encoder.codebook.shape[0])
        self.net = GatedPixelCNN(self.codebook_size, channels, layers, kernel)

    def _own_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("encoder.")]

    def forward(self) -> CodeGrid:
        return CodeGrid(self)

    def log_prob(self, z: Tensor) -> Tensor:
        return self().log_prob(z)

    def log_pmf(self, indices: Tensor) -> Tensor:
        """log P(indices) of index grids [B, H', W'], in nats, one number per grid."""
        logits = self.net(indices)
        return -F.cross_entropy(logits, indices, reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def sample_indices(self, n: int) -> Tensor:
        """``n`` index grids [n, H', W'] drawn in raster order."""
        _, height, width = self.grid
        device = next(self.net.parameters()).device
        indices = torch.zeros(n, height, width, dtype=torch.long, device=device)
        for i in range(height):
            for j in range(width):
                logits = self.net(indices)[:, :, i, j].float()
                indices[:, i, j] = torch.multinomial(logits.softmax(-1), 1).squeeze(1)
        return indices

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` codes [n, latent_size]: sampled index grids, embedded by the encoder's codebook."""
        return self.encoder.embed(self.sample_indices(n)).to(self.encoder.codebook.dtype)

    def fit(
        self,
        codes: Tensor,
        epochs: int = 20,
        batch_size: int = 128,
        lr: float = 1e-3,
        seed: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> dict[str, float]:
        """Fit to ``codes`` [N, latent_size] (the encoder's quantised codes of the training images) by
        maximum likelihood; return the final epoch's ``nll`` (nats per grid) and ``bits_per_index``.
        ``seed`` seeds the batches' order; ``log`` receives a line per epoch (``zoo fit-prior`` passes both)."""
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise zoo.ZooError(f"pixelcnn fit: {name} must be a positive integer (got {value!r})")
        if seed is not None:
            torch.manual_seed(seed)
        device = next(self.net.parameters()).device
        indices = self.encoder.indices_of_codes(codes.to(device=device, dtype=self.encoder.codebook.dtype))
        optimizer = torch.optim.Adam(self._own_parameters(), lr=float(lr))
        was_training = self.training
        self.train()
        nll = float("nan")
        for epoch in range(epochs):
            total = 0.0
            for batch in indices[torch.randperm(len(indices), device=device)].split(batch_size):
                loss = -self.log_pmf(batch).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            nll = total / len(indices)
            if log is not None:
                log(f"pixelcnn epoch {epoch + 1}/{epochs}: {nll:.3f} nats per grid")
        self.train(was_training)
        positions = self.grid[1] * self.grid[2]
        return {"nll": nll, "bits_per_index": nll / positions / math.log(2)}
