"""An encoder with a loss of its own: vector quantisation (van den Oord et al. 2017) of an MLP's output."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Independent

import zoo


class QuantisedMLPEncoder(zoo.Encoder):
    """x -> MLP -> ``latent_size / dim`` vectors of size ``dim``, each replaced by the nearest of
    ``codebook_size`` learned codebook vectors -> q(z|x), a Gaussian around the quantised code.

    The nearest-neighbour choice has no gradient, so the encoder adds two losses of its own with
    ``self.add_loss``: ``codebook`` pulls the chosen codebook vectors towards the network's output,
    ``commitment`` (weighted by ``beta``) keeps the output near its codebook vectors. zoo adds both to
    whatever objective trains the model. The straight-through estimator passes the objective's
    gradient from the quantised code to the network. The Gaussian's learned scale gives q(z|x) a
    density, so the ELBO and the importance-weighted bounds apply.
    """

    def __init__(
        self,
        latent_size: int,
        data_shape: tuple[int, ...],
        dim: int = 4,
        codebook_size: int = 64,
        hidden: int = 500,
        beta: float = 0.25,
    ) -> None:
        super().__init__()
        if dim < 1 or latent_size % dim:
            raise zoo.ZooError(f"latent_size ({latent_size}) must be a multiple of dim ({dim})")
        if codebook_size < 2:
            raise zoo.ZooError(f"codebook_size must be at least 2 (got {codebook_size})")
        self.latent_size, self.dim, self.beta = latent_size, dim, beta
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(data_shape), hidden), nn.ReLU(), nn.Linear(hidden, latent_size)
        )
        self.codebook = nn.Parameter(torch.empty(codebook_size, dim).uniform_(-1 / codebook_size, 1 / codebook_size))
        self.log_var = nn.Parameter(torch.full((latent_size,), -4.0))

    def forward(self, x: Tensor) -> Independent:
        h = self.net(x).view(len(x), -1, self.dim)  # [B, latent_size / dim, dim]
        nearest = torch.cdist(h.detach(), self.codebook.expand(len(x), -1, -1)).argmin(-1)
        e = self.codebook[nearest]  # the chosen codebook vectors, [B, latent_size / dim, dim]
        self.add_loss("codebook", (e - h.detach()).square().flatten(1).sum(1).mean())
        self.add_loss("commitment", self.beta * (h - e.detach()).square().flatten(1).sum(1).mean())
        quantised = h + (e - h).detach()  # straight-through: the gradient skips the lookup
        return zoo.diagonal_gaussian(quantised.flatten(1), self.log_var.expand(len(x), -1))
