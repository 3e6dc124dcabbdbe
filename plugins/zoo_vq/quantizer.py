"""Vector quantisation (van den Oord et al. 2017): each vector of a grid is replaced by the nearest of
K codebook vectors, with the straight-through gradient and the codebook and commitment losses."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import zoo


class Quantized(NamedTuple):
    """The result of quantising a grid ``h`` [B, D, H, W]."""

    codes: Tensor  # [B, D, H, W]: the chosen codebook vectors, with the straight-through gradient to h
    indices: Tensor  # [B, H, W]: which codebook vector each position took (long)
    codebook_loss: Tensor  # ||sg[h] - e||^2 summed over the grid, batch mean (0 under EMA updates)
    commitment_loss: Tensor  # ||h - sg[e]||^2 summed over the grid, batch mean (before beta)


class VectorQuantizer(nn.Module):
    """K codebook vectors of size D and the nearest-neighbour lookup.

    The first training pass sets the codebook to K vectors of its batch (see :meth:`_initialise_once`).
    With ``ema=False`` (the paper's main form) the codebook is a parameter trained by the codebook
    loss ||sg[h] - e||^2. With ``ema=True`` (the paper's appendix A.1) it is a buffer moved towards
    the mean of the vectors assigned to each entry, with decay ``decay``, in place during each
    training pass; the codebook loss is then zero and only the commitment loss trains the encoder.
    """

    def __init__(self, codebook_size: int, dim: int, ema: bool = False, decay: float = 0.99) -> None:
        super().__init__()
        if isinstance(codebook_size, bool) or not isinstance(codebook_size, int) or codebook_size < 2:
            raise zoo.ZooError(f"codebook_size must be an integer of at least 2 (got {codebook_size!r})")
        if not 0.0 < decay < 1.0:
            raise zoo.ZooError(f"decay must lie strictly between 0 and 1 (got {decay})")
        self.codebook_size, self.dim, self.ema, self.decay = codebook_size, dim, bool(ema), float(decay)
        initial = torch.empty(codebook_size, dim).uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        self.register_buffer("initialised", torch.tensor(False))  # set by the first training pass
        if self.ema:
            self.register_buffer("codebook", initial)
            self.register_buffer("cluster_size", torch.zeros(codebook_size))
            self.register_buffer("vector_sum", initial.clone())
        else:
            self.codebook = nn.Parameter(initial)

    def nearest(self, flat: Tensor) -> Tensor:
        """Index of the nearest codebook vector of each row of ``flat`` [N, D] (squared distance)."""
        codebook = self.codebook.to(flat.dtype)
        distances = flat.square().sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.square().sum(1)
        return distances.argmin(1)

    def lookup(self, indices: Tensor) -> Tensor:
        """Codebook vectors of ``indices`` [B, H, W] as a grid [B, D, H, W]."""
        if (
            indices.dtype not in (torch.int64, torch.int32)
            or (indices < 0).any()
            or (indices >= self.codebook_size).any()
        ):
            raise zoo.ZooError(f"code indices must be integers in [0, {self.codebook_size}) (got {indices.dtype})")
        return F.embedding(indices.long(), self.codebook).permute(0, 3, 1, 2)

    def forward(self, h: Tensor) -> Quantized:
        h = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h  # distances in full precision
        B, D, H, W = h.shape
        flat = h.permute(0, 2, 3, 1).reshape(-1, D)
        if self.training:
            self._initialise_once(flat.detach())
        indices = self.nearest(flat.detach())
        chosen = F.embedding(indices, self.codebook.to(h.dtype)).view(B, H, W, D).permute(0, 3, 1, 2)
        if self.ema and self.training:
            self._ema_update(flat.detach(), indices)
        # Summed over the grid, per image (the paper's squared norms, in the units of the
        # reconstruction term); averaged over the elements instead, they let the encoder's outputs
        # grow far beyond what the codebook follows.
        commitment = (h - chosen.detach()).square().flatten(1).sum(1).mean()
        if self.ema:
            codebook_loss = torch.zeros((), device=h.device, dtype=h.dtype)
        else:
            codebook_loss = (chosen - h.detach()).square().flatten(1).sum(1).mean()
        codes = h + (chosen - h).detach()  # straight-through: the decoder's gradient flows to h
        return Quantized(codes, indices.view(B, H, W), codebook_loss, commitment)

    @torch.no_grad()
    def _initialise_once(self, flat: Tensor) -> None:
        """At the first training pass, set the codebook to K of the batch's vectors drawn at random.

        Started near zero instead, as the paper's uniform(-1/K, 1/K), the codebook moves by about the
        learning rate per Adam step while the encoder's outputs are of order 1: every vector then
        picks the same few entries and most of K are never used (10 of 512 after an MNIST epoch).
        The choice is made without reading the flag on the host (``torch.where``), so a CUDA graph
        replays it correctly."""
        drawn = flat[torch.randint(len(flat), (self.codebook_size,), device=flat.device)].to(self.codebook.dtype)
        self.codebook.copy_(torch.where(self.initialised, self.codebook, drawn))
        if self.ema:
            self.vector_sum.copy_(torch.where(self.initialised, self.vector_sum, drawn))
            self.cluster_size.copy_(
                torch.where(self.initialised, self.cluster_size, torch.ones_like(self.cluster_size))
            )
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, indices: Tensor) -> None:
        """Exponential moving averages of each entry's count and vector sum, in place (CUDA-graph safe)."""
        one_hot = F.one_hot(indices, self.codebook_size).to(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(one_hot.sum(0).to(self.cluster_size.dtype), alpha=1 - self.decay)
        self.vector_sum.mul_(self.decay).add_((one_hot.t() @ flat).to(self.vector_sum.dtype), alpha=1 - self.decay)
        # Laplace smoothing keeps an unused entry's count above zero (the paper's appendix).
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + self.codebook_size * 1e-5) * n
        self.codebook.copy_(self.vector_sum / smoothed.unsqueeze(1))
