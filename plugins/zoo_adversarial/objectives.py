"""The objectives trained against a discriminator: the adversarial autoencoder (``aae``) and
VAE-GAN (``vae-gan``). Each holds its discriminator as a submodule, declares it in ``updates()``
and returns its loss as ``ObjectiveOutput.losses["discriminator"]``: zoo's trainer steps the
discriminator with that loss and its own optimizer only, and the model with the model's loss only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence
from torch.nn.functional import binary_cross_entropy_with_logits as bce_logits

import zoo
from zoo.interfaces import Update

from .discriminators import (
    CodeDiscriminator,
    ImageDiscriminator,
    non_negative,
    positive_int,
    scale_gradient,
    unsized_as_none,
)

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")


def _optimizer(owner: str, name: str) -> str:
    if name not in OPTIMIZERS:
        raise zoo.ZooError(f"{owner}: discriminator_optimizer must be one of {', '.join(OPTIMIZERS)} (got {name!r})")
    return name


def _lr(owner: str, value: float | None) -> float | None:
    return None if value is None else non_negative(owner, "discriminator_lr", value, positive=True)


def _as(label: float, logits: Tensor) -> Tensor:
    """The mean binary cross-entropy of ``logits`` against the constant ``label``."""
    return bce_logits(logits, torch.full_like(logits, label))


def _kl(q, p, z: Tensor) -> Tensor:
    """KL(q || p) per example: closed form where torch has one, else the one-sample estimate at ``z``."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z)


class AdversarialAutoencoder(zoo.Objective):
    """The adversarial autoencoder (Makhzani et al. 2016): reconstruction plus an adversarial
    regulariser matching the codes to the prior, in pythae's form.

    An MLP discriminator on z (``hidden`` units, ``layers`` hidden layers) learns to tell prior
    samples (label 1) from the encoder's codes (label 0): its loss is the sum of the two binary
    cross-entropies, minimised by its own optimizer (``discriminator_optimizer``, Adam by default, at
    ``discriminator_lr``, the recipe's learning rate when unset). The model minimises
    ``reconstruction_scale x (-log p(x|z)) + adversarial_scale x BCE(D(z), 1)``: its codes try to
    pass for prior samples. The codes are ``rsample()`` of q(z|x), so a stochastic encoder (as in
    pythae's default) and a deterministic one (a ``zoo.PointMass``) both work; q's density is never
    used, hence ``needs_density = False``.
    """

    needs_density = False

    def __init__(
        self,
        adversarial_scale: float = 0.5,
        reconstruction_scale: float = 1.0,
        hidden: int = 256,
        layers: int = 1,
        discriminator_lr: float | None = None,
        discriminator_optimizer: str = "adam",
    ) -> None:
        super().__init__()
        what = "objective 'aae'"
        self.adversarial_scale = non_negative(what, "adversarial_scale", adversarial_scale)
        self.reconstruction_scale = non_negative(what, "reconstruction_scale", reconstruction_scale, positive=True)
        self.discriminator_lr = _lr(what, discriminator_lr)
        self.discriminator_optimizer = _optimizer(what, discriminator_optimizer)
        self.discriminator = CodeDiscriminator(
            positive_int(what, "hidden", hidden), positive_int(what, "layers", layers)
        )
        self.register_state_dict_post_hook(unsized_as_none)

    def updates(self) -> list[Update]:
        """The discriminator, stepped by its own optimizer after the model's."""
        return [Update("discriminator", self.discriminator, self.discriminator_optimizer, self.discriminator_lr)]

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        """The model's loss (reconstruction and fooling the discriminator) and the discriminator's."""
        z = model.encoder(x).rsample()
        recon = model.likelihood(model.decoder(z)).log_prob(x)
        z_prior = model.prior.sample(len(x)).to(z.dtype)
        fooling = _as(1.0, self.discriminator(z))
        loss = -self.reconstruction_scale * recon.mean() + self.adversarial_scale * fooling
        codes, prior = self.discriminator(z.detach()), self.discriminator(z_prior.detach())
        discriminator_loss = _as(0.0, codes) + _as(1.0, prior)
        accuracy = ((codes < 0).float().mean() + (prior > 0).float().mean()) / 2
        logs = {"recon": -recon.mean().detach(), "adversarial": fooling.detach(), "d_accuracy": accuracy.detach()}
        return zoo.ObjectiveOutput(loss, logs, losses={"discriminator": discriminator_loss})


class VAEGAN(zoo.Objective):
    """VAE-GAN (Larsen et al. 2016): a VAE whose reconstruction is measured in the features of a
    GAN discriminator's layer ``layer`` (their learned similarity Dis_l), trained with that GAN.

    The paper's three losses: L_prior = KL(q(z|x) || p(z)) (weighted by ``beta``, 1 in the paper),
    L_llike = 0.5 ||Dis_l(x) - Dis_l(x~)||^2 summed over the features (a Gaussian of unit variance in
    feature space, x~ the likelihood's mean at z ~ q(z|x)), and the GAN loss over real images,
    reconstructions and decoded prior samples. The paper updates the encoder with
    L_prior + L_llike, the decoder with gamma L_llike - L_GAN and the discriminator with L_GAN. zoo
    steps the encoder and decoder with one optimizer, so one loss gives each its own gradient: L_llike
    is weighted by ``gamma`` and its gradient into the code scaled by 1/gamma (the encoder sees
    L_llike, the decoder gamma L_llike), and the decoder's GAN term (the non-saturating
    BCE(D(fake), 1)) decodes a detached code, so it never reaches the encoder. The discriminator
    (``channels``, doubling over 3 convs) minimises BCE(D(x), 1) + BCE(D(x~), 0) + BCE(D(x_p), 0)
    with its own optimizer; the model's features of real images use it but never move it.
    """

    def __init__(
        self,
        gamma: float = 1.0,
        beta: float = 1.0,
        layer: int = 3,
        channels: int = 16,
        discriminator_lr: float | None = None,
        discriminator_optimizer: str = "adam",
    ) -> None:
        super().__init__()
        what = "objective 'vae-gan'"
        self.gamma = non_negative(what, "gamma", gamma, positive=True)
        self.beta = non_negative(what, "beta", beta)
        depth = ImageDiscriminator.depth
        if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= depth:
            raise zoo.ZooError(f"{what}: layer must be a conv layer of the discriminator, 1 to {depth} (got {layer!r})")
        self.discriminator_lr = _lr(what, discriminator_lr)
        self.discriminator_optimizer = _optimizer(what, discriminator_optimizer)
        self.discriminator = ImageDiscriminator(positive_int(what, "channels", channels), layer)
        self.register_state_dict_post_hook(unsized_as_none)

    def updates(self) -> list[Update]:
        """The discriminator, stepped by its own optimizer after the model's."""
        return [Update("discriminator", self.discriminator, self.discriminator_optimizer, self.discriminator_lr)]

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        """The encoder's and decoder's losses as one, and the discriminator's."""
        if x.dim() != 4:
            raise zoo.ZooError(
                f"objective 'vae-gan' trains on images [B, C, H, W] (got a batch of shape {tuple(x.shape)})"
            )
        q = model.encoder(x)
        z = q.rsample()
        p = model.prior()
        kl = _kl(q, p, z)
        # x~ for L_llike: its gradient reaches the decoder x gamma and the code x 1 (see the class docstring)
        recon = model.likelihood(model.decoder(scale_gradient(z, 1.0 / self.gamma))).mean
        real_features, real_logits = self.discriminator(x)
        recon_features, _ = self.discriminator(recon)
        llike = 0.5 * (real_features.detach() - recon_features).pow(2).sum(-1)
        # the decoder's fakes: reconstructions of detached codes and decoded prior samples
        fakes = model.likelihood(model.decoder(torch.cat([z.detach(), p.sample((len(x),)).to(z.dtype)]))).mean
        fooling = _as(1.0, self.discriminator(fakes)[1]) * 2
        loss = (self.beta * kl + self.gamma * llike).mean() + fooling
        fake_logits = self.discriminator(fakes.detach())[1]
        discriminator_loss = _as(1.0, real_logits) + 2 * _as(0.0, fake_logits)
        accuracy = ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()) / 2
        logs = {
            "kl": kl.mean().detach(),
            "llike": llike.mean().detach(),
            "adversarial": fooling.detach(),
            "d_accuracy": accuracy.detach(),
        }
        return zoo.ObjectiveOutput(loss, logs, losses={"discriminator": discriminator_loss})
