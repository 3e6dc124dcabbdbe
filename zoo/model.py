"""The VAE: an encoder, a decoder, a prior and a likelihood held as one ``nn.Module``.

The :class:`VAE` computes the quantities every objective and evaluation needs
(:meth:`VAE.elbo`, :meth:`VAE.iwae`, :meth:`VAE.iw_terms`, :meth:`VAE.reconstruction_nll`); what it
is *trained* with is a separate :class:`zoo.Objective`. A model whose encoder is deterministic
(:attr:`VAE.deterministic`, an autoencoder's) has no ELBO or importance-weighted bound: those raise
:class:`zoo.distributions.NoDensityError`, and it is scored by reconstruction. Models are built by :mod:`zoo.composition` (``zoo.compose``,
``zoo.create``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from zoo.distributions import NoDensityError
from zoo.errors import ZooError, is_count
from zoo.estimators import LogWeights, iw_draws
from zoo.interfaces import Decoder, Encoder, Likelihood, Prior
from zoo.objectives import ELBOTerms, kl_term


def _losses_of_distribution(module: nn.Module, args: Any, output: Any) -> None:
    """A component's returned distribution may carry auxiliary losses (``aux_losses``): add them."""
    losses = getattr(output, "aux_losses", None)
    if isinstance(losses, dict) and hasattr(module, "add_loss"):
        for name, value in losses.items():
            module.add_loss(name, value)


class VAE(nn.Module):
    """A variational autoencoder composed of the four components.

    ``forward(x)`` is :meth:`elbo`, so wrappers such as DistributedDataParallel work unchanged.
    ``spec`` describes how the model was built (component ids and options, latent size, data
    shape); checkpoints store it so :func:`zoo.load` can rebuild the model.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        prior: Prior,
        likelihood: Likelihood,
        *,
        data_shape: Sequence[int],
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.likelihood = likelihood
        self.data_shape = tuple(data_shape)
        self.spec = spec or {}
        #: Check every input against the likelihood's support. The trainer checks its data set
        #: once and switches this off, so the hot loop does not synchronise on it.
        self.check_inputs = True
        for component in (encoder, decoder, prior, likelihood):
            component.register_forward_hook(_losses_of_distribution)

    @property
    def latent_size(self) -> int:
        return self.prior.latent_size

    @property
    def deterministic(self) -> bool:
        """Whether the encoder is deterministic (returns a :class:`zoo.PointMass`): then q(z|x) has no
        density, and the ELBO and the importance-weighted bound do not apply."""
        return bool(getattr(self.encoder, "deterministic", False))

    def _require_density(self, what: str) -> None:
        if self.deterministic:
            raise NoDensityError(
                f"{what} needs q(z|x) to have a density, but this model's encoder ({type(self.encoder).__name__}) "
                "is deterministic; score it with model.reconstruction_nll(x), FID and samples instead"
            )

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def check_input(self, x: Tensor) -> None:
        """Raise a :class:`ZooError` unless ``x`` is a batch this model takes (and, while
        :attr:`check_inputs`, one in the likelihood's support)."""
        if not isinstance(x, Tensor):
            raise ZooError(
                f"input must be a torch.Tensor shaped [B, {', '.join(map(str, self.data_shape))}], "
                f"got {type(x).__name__}"
            )
        if tuple(x.shape[1:]) != self.data_shape:
            raise ZooError(
                f"input shaped {tuple(x.shape)}, but this model takes [B, {', '.join(map(str, self.data_shape))}]"
            )
        if x.shape[0] == 0:
            raise ZooError("input is an empty batch; give at least one example")
        if self.check_inputs:
            if not x.is_floating_point():
                raise ZooError(
                    f"input has dtype {x.dtype}; convert it to floats in the likelihood's range "
                    "(e.g. x.float() / 255 for 8-bit images)"
                )
            expected = next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.float32)
            if x.dtype != expected and not torch.is_autocast_enabled():
                raise ZooError(
                    f"input has dtype {x.dtype} but the model's parameters are {expected}; "
                    f"convert one of them (x.to({expected}) or model.to({x.dtype}))"
                )
            self.likelihood.check_data(x)

    def forward(self, x: Tensor) -> ELBOTerms:
        return self.elbo(x)

    def elbo(self, x: Tensor) -> ELBOTerms:
        """Per-example ELBO terms with one reparameterised sample of z (a :class:`NoDensityError` for a
        deterministic encoder)."""
        self._require_density("the ELBO")
        self.check_input(x)
        q = self.encoder(x)
        z = q.rsample()
        p_x = self.likelihood(self.decoder(z))
        recon = p_x.log_prob(x)
        kl = kl_term(q, self.prior(), z)
        return ELBOTerms(recon - kl, recon, kl)

    def loss(self, terms: ELBOTerms) -> Tensor:
        """The negative ELBO, mean over the batch (nats/example). Training uses a :class:`zoo.Objective`."""
        return -terms.elbo.mean()

    def reconstruction_nll(self, x: Tensor) -> Tensor:
        """-log p(x|z) per example [B], nats, at z = q.rsample(): the code itself for a deterministic
        encoder, one posterior draw for a stochastic one."""
        self.check_input(x)
        z = self.encoder(x).rsample()
        return -self.likelihood(self.decoder(z)).log_prob(x)

    def iw_terms(self, x: Tensor, samples: int, chunk_size: int | None = None):
        """Yield ``(log p(x|z_k), log q(z_k|x) - log p(z_k))`` for ``samples`` draws per example,
        in chunks shaped [k, B]; their difference is the log importance weight.

        Decoding ``chunk_size`` draws at a time (default: about 4096 decoded examples) keeps
        memory bounded however many samples are asked for.
        """
        for w in self._iw_draws(x, samples, chunk_size):
            yield w.log_px_z, w.log_ratio

    def iw_log_weights(self, x: Tensor, samples: int, chunk_size: int | None = None):
        """Yield log p(x, z_k) - log q(z_k|x) for ``samples`` draws per example, in chunks [k, B]."""
        for w in self._iw_draws(x, samples, chunk_size):
            yield w.log_w

    def _iw_draws(self, x: Tensor, samples: int, chunk_size: int | None) -> Iterator[LogWeights]:
        """:func:`zoo.estimators.iw_draws` on checked arguments (the checks run at the first draw)."""
        self._require_density("the importance-weighted bound")
        if not is_count(samples):
            raise ZooError(f"samples must be a positive integer (got {samples!r})")
        if chunk_size is not None and not is_count(chunk_size):
            raise ZooError(f"chunk_size must be a positive integer (got {chunk_size!r})")
        self.check_input(x)
        chunk = chunk_size or max(1, min(samples, 4096 // max(1, x.shape[0])))
        yield from iw_draws(self, x, samples, chunk)

    def iwae(self, x: Tensor, samples: int = 50, chunk_size: int | None = None) -> Tensor:
        """Importance-weighted bound (Burda et al.) per example [B], with ``samples`` draws.

        Decoding happens in chunks of ``chunk_size`` draws (default: about 4096 decoded images
        at a time), so memory stays bounded for large ``samples``.
        """
        running = None  # logsumexp over the chunks seen so far
        for log_w in self.iw_log_weights(x, samples, chunk_size):
            part = torch.logsumexp(log_w, dim=0)
            running = part if running is None else torch.logaddexp(running, part)
        assert running is not None
        return running - math.log(samples)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` images: the likelihood's mean at z drawn from the prior, [n, *data_shape]."""
        if not is_count(n):
            raise ZooError(f"the number of samples must be a positive integer (got {n!r})")
        z = self.prior.sample(n)
        return self.likelihood(self.decoder(z)).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The likelihood's mean at the posterior mean of each input."""
        self.check_input(x)
        return self.likelihood(self.decoder(self.encoder(x).mean)).mean

    def extra_repr(self) -> str:
        return f"latent_size={self.latent_size}, data_shape={self.data_shape}"
