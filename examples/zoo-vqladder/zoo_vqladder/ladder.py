"""A ladder VAE (Sønderby et al. 2016) with two stochastic layers: an encoder and a prior that share
the top-down network p(z1 | z2), and so must be composed together."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

import zoo


class LadderEncoder(zoo.Encoder):
    """q(z2 | x) q(z1 | x, z2): a bottom-up pass, then a top-down pass that combines it with p(z1 | z2).

    The bottom-up MLP gives a Gaussian estimate for each layer; q(z2 | x) is the top one, and
    q(z1 | x, z2) is the precision-weighted product of the bottom-up estimate for z1 and the prior's
    p(z1 | z2) = ``self.top_down(z2)``. The top-down network is the encoder's (``top_down``), and the
    ``ladder`` prior reads it from the encoder: the class declares that partner, so zoo refuses any
    other prior beside it. ``top`` latents are z2 (half of ``latent_size`` by default, 0), the rest z1.
    """

    partners = {"prior": "ladder"}

    def __init__(self, latent_size: int, data_shape: tuple[int, ...], hidden: int = 256, top: int = 0) -> None:
        super().__init__()
        top = top or latent_size // 2
        if not 1 <= top < latent_size:
            raise zoo.ZooError(f"top must leave at least one latent to each layer (got {top} of {latent_size})")
        self.latent_size = latent_size
        self.layout = {"z1": latent_size - top, "z2": top}
        z1, z2 = self.layout["z1"], self.layout["z2"]
        self.up1 = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(data_shape), hidden), nn.ReLU())
        self.up2 = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.head1, self.head2 = nn.Linear(hidden, 2 * z1), nn.Linear(hidden, 2 * z2)
        self.top_down = nn.Sequential(nn.Linear(z2, hidden), nn.ReLU(), nn.Linear(hidden, 2 * z1))

    def p_z1(self, z2: Tensor) -> Independent:
        """p(z1 | z2), the top-down layer the prior shares."""
        mean, log_var = self.top_down(z2).chunk(2, dim=-1)
        return zoo.diagonal_gaussian(mean, log_var)

    def forward(self, x: Tensor) -> zoo.Chain:
        d1 = self.up1(x)
        d2 = self.up2(d1)
        q_z2 = zoo.diagonal_gaussian(*self.head2(d2).chunk(2, dim=-1))
        up_mean, up_log_var = self.head1(d1).chunk(2, dim=-1)

        def q_z1(parts: dict[str, Tensor]) -> Independent:
            down = self.p_z1(parts["z2"]).base_dist
            up_precision = torch.exp(-up_log_var)
            down_precision = down.scale.pow(-2)
            variance = 1 / (up_precision + down_precision)
            mean = variance * (up_mean * up_precision + down.loc * down_precision)
            return Independent(Normal(mean, variance.sqrt()), 1)

        return zoo.Chain(self.layout, [("z2", lambda parts: q_z2), ("z1", q_z1)])


class LadderPrior(zoo.Prior):
    """p(z2) p(z1 | z2): a standard normal top layer and the encoder's top-down layer beneath it.

    It asks zoo for the model's encoder (a parameter named ``encoder``) and reads its ``top_down``
    network and ``layout``; it has no parameters of its own. It declares the encoder as its partner
    too, so the conformance kit checks it beside a ladder encoder.
    """

    partners = {"encoder": "ladder"}

    def __init__(self, encoder: zoo.Encoder, latent_size: int) -> None:
        super().__init__()
        if not isinstance(encoder, LadderEncoder):
            raise zoo.ZooError(
                f"the ladder prior reads a ladder encoder's top-down layer (got {type(encoder).__name__})"
            )
        self.latent_size = latent_size
        self.encoder = encoder
        self.register_buffer("zero", torch.zeros(encoder.layout["z2"]))

    def forward(self) -> zoo.Chain:
        p_z2 = Independent(Normal(self.zero, torch.ones_like(self.zero)), 1)
        return zoo.Chain(
            self.encoder.layout, [("z2", lambda parts: p_z2), ("z1", lambda parts: self.encoder.p_z1(parts["z2"]))]
        )
