"""The seed article's convolutional VAE and loss, written out once as a reference.

The seed (``../shared/seed/``) is the specification the reference plugin must match. The
benchmarks time its plain training loop and give pythae the same layers; the ELBO-equivalence
test (tests/test_objectives.py) checks zoo's ``vae-conv-mnist`` against its ``vae_loss``. All of
them take the layers from here, so there is one transcription of the article to review.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def seed_encoder(code_size: int) -> nn.Sequential:
    """[B, 1, 28, 28] -> [B, 2 * code_size, 1, 1]: mean, then log-variance."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1),
        nn.ReLU(True),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(True),
        nn.Conv2d(32, code_size * 2, 7),
    )


def seed_decoder(code_size: int) -> nn.Sequential:
    """[B, code_size, 1, 1] -> [B, 1, 28, 28] probabilities (a sigmoid output, as in the article)."""
    return nn.Sequential(
        nn.ConvTranspose2d(code_size, 32, 7),
        nn.ReLU(True),
        nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(True),
        nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),
        nn.Sigmoid(),
    )


class ConvolutionalVAE(nn.Module):
    """The seed's model: ``forward(x)`` returns (x_prime, mu, log_variance)."""

    def __init__(self, code_size: int) -> None:
        super().__init__()
        self.code_size = code_size
        self.encoder = seed_encoder(code_size)
        self.decoder = seed_decoder(code_size)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu_z, log_variance_z = self.encoder(x).chunk(2, dim=1)
        return mu_z, log_variance_z

    def sample_z(self, mu_z: Tensor, log_variance_z: Tensor) -> Tensor:
        sigma = torch.exp(0.5 * log_variance_z)
        return mu_z + torch.randn_like(sigma) * sigma

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu_z, log_variance_z = self.encode(x)
        return self.decode(self.sample_z(mu_z, log_variance_z)), mu_z, log_variance_z


def vae_loss(x: Tensor, x_prime: Tensor, mu: Tensor, log_variance: Tensor) -> Tensor:
    """The seed's loss: BCE on the sigmoid outputs plus the analytic KL, both summed over the batch."""
    reconstruction_loss = F.binary_cross_entropy(x_prime, x, reduction="sum")
    kl_divergence = -0.5 * torch.sum(1 + log_variance - mu.pow(2) - log_variance.exp())
    return reconstruction_loss + kl_divergence
