"""``two-stage``: the second stage of Dai & Wipf's two-stage VAE ("Diagnosing and Enhancing VAE
Models", ICLR 2019), pythae's ``TwoStageVAESampler``.

A second, small VAE is fitted to the codes of the first: an MLP encoder to a diagonal Gaussian
q(u|z) and an MLP decoder to the mean of a Gaussian p(z|u) = N(z; g(u), gamma^2 I) whose scalar
gamma is learned, as the paper prescribes (a learned gamma lets the second stage match the codes'
distribution where a fixed one cannot). New codes are drawn as z = g(u), u ~ N(0, I), the mean of
the second decoder. There is no tractable density of z, so ``has_density`` is False.

pythae's defaults: second-stage latent size equal to the first's, 2 hidden layers of 1024 ReLU
units in each network, Adam at 1e-4, batches of 64, 100 epochs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

import zoo
from zoo_samplers.fitting import check_codes, check_training, train


class TwoStageSampler(zoo.Sampler):
    """A second VAE on the codes; draws are its decoder's means at N(0, I) draws (see the module docs).

    ``second_latent`` is the second stage's latent size (0: the first stage's), ``depth`` and ``width``
    the number and width of hidden layers of its encoder and decoder.
    """

    has_density = False

    def __init__(
        self,
        latent_size: int,
        second_latent: int = 0,
        depth: int = 2,
        width: int = 1024,
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-4,
    ) -> None:
        super().__init__()
        check_training("two-stage", epochs, batch_size, lr)
        for name, value, least in (("second_latent", second_latent, 0), ("depth", depth, 1), ("width", width, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise zoo.ZooError(f"two-stage option {name} must be an integer of at least {least} (got {value!r})")
        self.latent_size = latent_size
        self.second_latent = second_latent or latent_size
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        hidden = [width] * depth
        self.encoder_net = zoo.mlp([latent_size, *hidden, 2 * self.second_latent], nn.ReLU)
        self.decoder_net = zoo.mlp([self.second_latent, *hidden, latent_size], nn.ReLU)
        self.log_gamma = nn.Parameter(torch.zeros(()))

    def forward(self):
        raise zoo.ZooError(
            "two-stage has no density of the codes (it draws them through a second VAE's decoder), so "
            "log p(z), the ELBO and the IW-NLL do not apply; use its samples (FID) or a sampler with a density"
        )

    def log_prob(self, z: Tensor) -> Tensor:
        return self()

    def sample(self, n: int) -> Tensor:
        with torch.no_grad():
            u = torch.randn(n, self.second_latent, device=self.log_gamma.device, dtype=self.log_gamma.dtype)
            return self.decoder_net(u)

    def loss(self, z: Tensor) -> Tensor:
        """The second stage's negative ELBO per code, averaged: Gaussian reconstruction with the
        learned gamma, plus the analytic KL of q(u|z) from N(0, I)."""
        mean, log_var = self.encoder_net(z).chunk(2, dim=-1)
        u = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        error = (z - self.decoder_net(u)).pow(2).sum(-1)
        gamma2 = torch.exp(2 * self.log_gamma)
        recon = 0.5 * error / gamma2 + self.latent_size * (self.log_gamma + 0.5 * math.log(2 * math.pi))
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
        return (recon + kl).mean()

    def fit(self, codes: Tensor, epochs: int | None = None, seed: int = 0, log=None) -> dict[str, float]:
        """Train the second VAE on ``codes`` with Adam (``epochs`` overrides the option); returns its
        last epoch's mean loss (the negative ELBO of a code, nats) and the learned gamma."""
        codes = check_codes(codes, self.latent_size, "two-stage").to(self.log_gamma.device)
        epochs = self.epochs if epochs is None else epochs
        check_training("two-stage", epochs, self.batch_size, self.lr)
        torch.manual_seed(seed)
        figures = train(
            self, self.loss, codes, epochs=epochs, batch_size=self.batch_size, lr=self.lr, seed=seed, log=log,
            what="two-stage",
        )  # fmt: skip
        return {
            "second_stage_neg_elbo": figures.pop("final_loss"),
            "gamma": float(self.log_gamma.detach().exp()),
            **figures,
        }
