"""The disentangling objectives: annealed capacity (Burgess et al. 2018), beta-TC-VAE (Chen et
al. 2018) and FactorVAE (Kim & Mnih 2018). beta-VAE itself (Higgins et al. 2017) is zoo's
``elbo`` objective with its ``beta`` option.

Each is a :class:`zoo.Objective`: per-example terms in nats, averaged over the batch; the KL is
torch's analytic one when it knows the (posterior, prior) pair and a one-sample Monte-Carlo
estimate otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, kl_divergence

import zoo
from zoo.interfaces import Update


def _number(name: str, value: object, least: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < least:
        raise zoo.ZooError(f"{name} must be a finite number >= {least:g} (got {value!r})")
    return float(value)


def _count(name: str, value: object, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise zoo.ZooError(f"{name} must be a whole number >= {least} (got {value!r})")
    return value


def _kl(q: Distribution, p: Distribution, z: Tensor) -> Tensor:
    """KL(q || p) per example: analytic when torch knows the pair, else log q(z) - log p(z) at ``z``."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z)


def _recon(model: nn.Module, x: Tensor, z: Tensor) -> Tensor:
    return model.likelihood(model.decoder(z)).log_prob(x)


class AnnealedCapacity(zoo.Objective):
    """beta-VAE with a controlled capacity (Burgess et al. 2018): ``-recon + gamma * |KL - C|``.

    The target KL ``C`` grows linearly from 0 to ``c_max`` nats over the first ``anneal_steps``
    training steps, then stays there (``anneal_steps=0``: ``c_max`` from the start). Steps are
    counted in a buffer updated in place, so a CUDA graph replays the schedule correctly and a
    resumed run continues it; evaluation does not advance it. Defaults: the paper's dSprites
    settings (gamma 1000, C from 0 to 25 nats over 100,000 steps).
    """

    def __init__(self, gamma: float = 1000.0, c_max: float = 25.0, anneal_steps: int = 100_000) -> None:
        super().__init__()
        self.gamma = _number("gamma", gamma)
        self.c_max = _number("c_max", c_max)
        self.anneal_steps = _count("anneal_steps", anneal_steps)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def capacity(self) -> Tensor:
        """The target KL ``C`` (nats) at the current step."""
        if not self.anneal_steps:
            return torch.full((), self.c_max, device=self.steps.device)
        return self.c_max * torch.clamp(self.steps.float() / self.anneal_steps, max=1.0)

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        q = model.encoder(x)
        z = q.rsample()
        recon = _recon(model, x, z)
        kl = _kl(q, model.prior(), z)
        c = self.capacity()
        if self.training:
            self.steps += 1
        loss = -recon.mean() + self.gamma * (kl.mean() - c).abs()
        logs = {"recon": -recon.mean().detach(), "kl": kl.mean().detach(), "capacity": c.detach()}
        return zoo.ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, c_max={self.c_max}, anneal_steps={self.anneal_steps}"


SAMPLINGS = ("mws", "mss")


def tc_decomposition(q: Distribution, log_pz: Tensor, z: Tensor, dataset_size: int, sampling: str = "mws"):
    """Chen et al. (2018)'s decomposition of the KL term on a batch, per example: ``(mi, tc, dwkl)``.

    ``mi = log q(z|x) - log q(z)`` (index-code mutual information), ``tc = log q(z) - log prod_d
    q(z_d)`` (total correlation), ``dwkl = log prod_d q(z_d) - log p(z)`` (dimension-wise KL); they
    sum to the Monte-Carlo KL ``log q(z|x) - log p(z)`` at the batch's one sample ``z`` [B, L] per
    example. The aggregate posterior q(z) and its marginals are estimated from the batch, as a
    weighted sum of q(z_i | x_j) over the batch's examples j, with weights (B examples of a data
    set of N):

    - ``mws`` (minibatch-weighted sampling, the paper's section 3.1): the paper weighs every pair
      1 / (N B); that adds the constant log N to each estimated log-density (log q(z) and each
      log q(z_d)), which no gradient sees, so it is left out here: every pair weighs 1 / B, and the
      logged terms are those of the batch taken as the data set (the loss's gradient is the paper's);
    - ``mss`` (stratified): 1 / N for the example's own j = i, which is exact, and (N - 1) / (N (B - 1))
      for each other example standing for the N - 1 not drawn; the weights sum to one.

    ``q`` must factorise over the dimensions: an ``Independent`` of one-dimensional factors with
    batch shape [B, L] (``zoo.diagonal_gaussian`` returns one).
    """
    base = q.base_dist if isinstance(q, Independent) and q.reinterpreted_batch_ndims == 1 else None
    if base is None or tuple(base.batch_shape) != tuple(z.shape):
        raise zoo.ZooError(
            "beta-tc needs a posterior that factorises over the latent dimensions (an Independent of "
            f"one-dimensional factors, as zoo.diagonal_gaussian returns), got {type(q).__name__}"
        )
    b = z.shape[0]
    n = max(int(dataset_size), b)
    pairs = base.log_prob(z.unsqueeze(1))  # [B, B, L]: log q(z_i,d | x_j)
    if sampling == "mws":
        log_w = torch.full((b, b), -math.log(b), device=z.device, dtype=pairs.dtype)
    else:
        other = math.log(n - 1) - math.log(n * (b - 1)) if b > 1 else -math.inf
        log_w = torch.full((b, b), other, device=z.device, dtype=pairs.dtype)
        log_w.fill_diagonal_(-math.log(n))
    log_qz = torch.logsumexp(log_w + pairs.sum(-1), dim=1)
    log_prod_qzd = torch.logsumexp(log_w.unsqueeze(-1) + pairs, dim=1).sum(-1)
    log_qz_x = q.log_prob(z)
    return log_qz_x - log_qz, log_qz - log_prod_qzd, log_prod_qzd - log_pz


class BetaTC(zoo.Objective):
    """beta-TC-VAE (Chen et al. 2018): ``-recon + alpha * MI + beta * TC + gamma * dim-wise KL``.

    The three terms decompose the KL term (:func:`tc_decomposition`); with ``alpha = beta = gamma
    = 1`` the loss is the negative ELBO with a Monte-Carlo KL. ``sampling`` is ``mws``
    (minibatch-weighted, the paper's) or ``mss`` (stratified). The data set's size N, which the
    stratified weights use, comes from the run (``self.context.dataset_size``); outside a run the
    batch counts as the data set. The defaults are the paper's: alpha = gamma = 1 and beta = 6,
    its dSprites setting. Each term is logged (``mi``, ``tc``, ``dwkl``) beside ``recon`` and ``kl``.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 6.0, gamma: float = 1.0, sampling: str = "mws") -> None:
        super().__init__()
        self.alpha = _number("alpha", alpha)
        self.beta = _number("beta", beta)
        self.gamma = _number("gamma", gamma)
        if sampling not in SAMPLINGS:
            raise zoo.ZooError(f"sampling must be 'mws' (minibatch-weighted) or 'mss' (stratified), got {sampling!r}")
        self.sampling = sampling

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        q = model.encoder(x)
        z = q.rsample()
        recon = _recon(model, x, z)
        log_pz = model.prior().log_prob(z)
        size = self.context.dataset_size if self.context is not None else x.shape[0]
        mi, tc, dwkl = tc_decomposition(q, log_pz, z, size, self.sampling)
        loss = -recon.mean() + self.alpha * mi.mean() + self.beta * tc.mean() + self.gamma * dwkl.mean()
        logs = {
            "recon": -recon.mean().detach(),
            "kl": (mi + tc + dwkl).mean().detach(),
            "mi": mi.mean().detach(),
            "tc": tc.mean().detach(),
            "dwkl": dwkl.mean().detach(),
        }
        return zoo.ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}, sampling={self.sampling!r}"


def permute_dims(z: Tensor) -> Tensor:
    """Each latent dimension shuffled across the batch on its own: a sample of prod_d q(z_d)."""
    order = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, order)


class Discriminator(nn.Module):
    """Kim & Mnih's total-correlation discriminator: ``layers`` dense layers of ``hidden`` units
    with leaky ReLU (slope 0.2) on codes of ``latent_size`` dimensions, then two logits: "a code
    of q(z)" and "a permuted code"."""

    def __init__(self, latent_size: int, hidden: int = 1000, layers: int = 6) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Linear(latent_size if i == 0 else hidden, hidden), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, 2))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class FactorVAE(zoo.Objective):
    """FactorVAE (Kim & Mnih 2018): the negative ELBO plus ``gamma`` times the total correlation
    estimated by a discriminator, ``E[log D(z) / (1 - D(z))]``.

    The discriminator (``layers`` x ``hidden`` leaky-ReLU MLP, the paper's 6 x 1000) reads codes
    of the model's latent size, which zoo passes in when it builds the objective for a model
    (``latent_size``); ``code_size`` sets it for an objective built on its own, and must then be
    the model's latent size. It is this objective's own module, trained by its own Adam (``lr``
    1e-4, betas ``(beta1, beta2)`` = (0.5, 0.9), the paper's) on its cross-entropy between codes
    of q(z) and dimension-wise permuted codes, returned as the loss ``discriminator``. The paper
    draws two batches per step, one for the VAE and one to permute; here a batch is split in two
    halves: the first half trains the VAE (its codes are the discriminator's "real" ones), the
    second half's codes are permuted, so a recipe's batch of 128 is the paper's two batches of 64.
    A batch of one example serves as both.
    """

    def __init__(
        self,
        gamma: float = 35.0,
        code_size: int | None = None,
        hidden: int = 1000,
        layers: int = 6,
        lr: float = 1e-4,
        beta1: float = 0.5,
        beta2: float = 0.9,
        latent_size: int | None = None,
    ) -> None:
        super().__init__()
        self.gamma = _number("gamma", gamma)
        self.hidden = _count("hidden", hidden, 1)
        self.layers = _count("layers", layers, 1)
        self.lr = _number("lr", lr)
        if not self.lr > 0:
            raise zoo.ZooError(f"lr must be positive (got {lr!r})")
        self.betas = (_number("beta1", beta1), _number("beta2", beta2))
        if not all(b < 1 for b in self.betas):
            raise zoo.ZooError(f"beta1 and beta2 must lie in [0, 1) (got {beta1!r}, {beta2!r})")
        if code_size is None and latent_size is None:
            raise zoo.ZooError(
                "factor-vae's discriminator needs the size of the model's codes: build it with its model "
                "(a recipe, zoo.compose, zoo.Trainer) or give the option code_size"
            )
        if code_size is not None and latent_size is not None and code_size != latent_size:
            raise zoo.ZooError(
                f"factor-vae's code_size {code_size!r} is not the model's latent size {latent_size}; "
                f"leave code_size out (it follows the model) or set objective.code_size={latent_size}"
            )
        self.code_size = _count("code_size", code_size if code_size is not None else latent_size, 1)
        self.discriminator = Discriminator(self.code_size, self.hidden, self.layers)

    def updates(self) -> list[Update]:
        return [
            Update("discriminator", self.discriminator, optimizer="adam", lr=self.lr, options={"betas": self.betas})
        ]

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        half = (x.shape[0] + 1) // 2
        x_vae, x_other = (x[:half], x[half:]) if x.shape[0] > 1 else (x, x)
        q = model.encoder(x_vae)
        z = q.rsample()
        if z.shape[-1] != self.code_size:
            raise zoo.ZooError(
                f"factor-vae's discriminator takes codes of {self.code_size} dimensions (objective option "
                f"code_size) but the model's have {z.shape[-1]}; leave code_size out so that it follows the model"
            )
        recon = _recon(model, x_vae, z)
        kl = _kl(q, model.prior(), z)
        real = self.discriminator(z)
        tc = (real[:, 0] - real[:, 1]).mean()
        loss = -(recon - kl).mean() + self.gamma * tc
        # The discriminator's loss reuses the real codes' pass (as pythae does, one pass fewer a step);
        # the trainer gives each loss's gradient to its own parameters only (Objective.updates), so
        # it never reaches the model, and the model's loss never reaches the discriminator.
        with torch.no_grad():
            z_other = model.encoder(x_other).sample()
        fake = self.discriminator(permute_dims(z_other))
        zeros = torch.zeros(real.shape[0], dtype=torch.long, device=z.device)
        ones = torch.ones(fake.shape[0], dtype=torch.long, device=z.device)
        d_loss = 0.5 * (nn.functional.cross_entropy(real, zeros) + nn.functional.cross_entropy(fake, ones))
        accuracy = 0.5 * ((real.argmax(1) == 0).float().mean() + (fake.argmax(1) == 1).float().mean())
        logs = {
            "recon": -recon.mean().detach(),
            "kl": kl.mean().detach(),
            "tc": tc.detach(),
            "discriminator_accuracy": accuracy.detach(),
        }
        return zoo.ObjectiveOutput(loss, logs, losses={"discriminator": d_loss})

    def extra_repr(self) -> str:
        return (
            f"gamma={self.gamma}, code_size={self.code_size}, hidden={self.hidden}, layers={self.layers}, "
            f"lr={self.lr}, betas={self.betas}"
        )
