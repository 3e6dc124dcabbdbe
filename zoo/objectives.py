"""Objectives computed from whatever is composed: the ELBO and the importance-weighted family.

Everything is per example (shape [B]) and in nats, built only from ``rsample`` and ``log_prob``
of the model's distributions (``torch.distributions``): the KL term is analytic when torch's KL
registry knows the (posterior, prior) pair and a Monte-Carlo estimate ``log q(z|x) - log p(z)``
at the sampled ``z`` otherwise.

The registered objectives (``zoo list --kind objective``) are :class:`zoo.Objective` modules:

============  ===================================================================================
``elbo``      negative ELBO; ``beta`` weighting, linear KL ``warmup`` over N steps, ``free_bits``
``iwae``      importance-weighted bound (Burda et al. 2015), optional DReG gradients (Tucker et al. 2018)
``miwae``     mean of M IWAE bounds of K samples each (Rainforth et al. 2018)
``piwae``     encoder trained with MIWAE(M, K), decoder and prior with IWAE(M x K) (Rainforth et al.)
``ciwae``     ``beta`` x ELBO + (1 - ``beta``) x IWAE on the same K samples (Rainforth et al.)
============  ===================================================================================

The importance-weighted ones weigh their draws with :func:`zoo.estimators.iw_log_weights`, as
the model and the evaluator do.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, kl_divergence

from zoo.errors import ZooError, is_count
from zoo.estimators import iw_log_weights
from zoo.interfaces import Objective, ObjectiveOutput

_ANALYTIC_KL: dict[tuple[type, type], bool] = {}


class ELBOTerms(NamedTuple):
    """Per-example terms of the evidence lower bound, in nats: ``elbo = recon - kl``."""

    elbo: Tensor
    recon: Tensor  # E_q[log p(x|z)], one-sample estimate
    kl: Tensor  # KL(q(z|x) || p(z)), analytic or one-sample estimate


def kl_term(q: Distribution, p: Distribution, z: Tensor | None = None) -> Tensor:
    """KL(q || p) per example: analytic if torch knows the pair, else Monte-Carlo at ``z``.

    ``z`` must be a sample of ``q`` (it is drawn when missing and the KL is not analytic).
    """
    key = (type(q), type(p))
    if _ANALYTIC_KL.get(key, True):
        try:
            kl = kl_divergence(q, p)
            _ANALYTIC_KL[key] = True
            return kl
        except NotImplementedError:
            _ANALYTIC_KL[key] = False
    if z is None:
        z = q.rsample()
    return q.log_prob(z) - p.log_prob(z)


def kl_per_dimension(q: Distribution, p: Distribution) -> Tensor | None:
    """KL(q || p) per latent dimension, [B, L], when both factorise over the dimensions and torch
    knows the KL of their factors analytically; ``None`` otherwise."""
    if not (isinstance(q, Independent) and isinstance(p, Independent)):
        return None
    if q.reinterpreted_batch_ndims != 1 or p.reinterpreted_batch_ndims != 1:
        return None
    try:
        return kl_divergence(q.base_dist, p.base_dist)
    except NotImplementedError:
        return None


def has_analytic_kl(q: Distribution, p: Distribution) -> bool:
    """Whether :func:`kl_term` takes the analytic path for this pair."""
    try:
        kl_divergence(q, p)
        return True
    except NotImplementedError:
        return False


def log_mean_exp(values: Tensor, dim: int = 0) -> Tensor:
    """log(mean(exp(values))) along ``dim``, without overflow."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])


# -- the objectives --------------------------------------------------------------------------


def _positive_int(name: str, value: object) -> int:
    if not is_count(value):
        raise ZooError(f"{name} must be a positive integer (got {value!r})")
    return value


def _finite_at_least(name: str, value: object, least: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < least:
        raise ZooError(f"{name} must be a finite number >= {least:g} (got {value!r})")
    return float(value)


class ELBO(Objective):
    """The negative evidence lower bound, averaged over the batch.

    ``beta`` weights the KL term (beta-VAE, Higgins et al. 2017). ``warmup`` > 0 raises that
    weight linearly from 0 to ``beta`` over the first ``warmup`` training steps (Bowman et al.
    2016; Sønderby et al. 2016). ``free_bits`` > 0 is a floor, in nats, on the batch-mean KL of
    each latent dimension (Kingma et al. 2016); it needs a posterior and prior that factorise
    over the dimensions with an analytic KL.
    """

    def __init__(self, beta: float = 1.0, warmup: int = 0, free_bits: float = 0.0) -> None:
        super().__init__()
        self.beta = _finite_at_least("beta", beta, 0.0)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ZooError(f"warmup must be a whole number of steps >= 0 (got {warmup!r})")
        self.warmup = warmup
        self.free_bits = _finite_at_least("free_bits", free_bits, 0.0)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def kl_weight(self) -> Tensor | float:
        if not self.warmup:
            return self.beta
        return self.beta * torch.clamp(self.steps.float() / self.warmup, max=1.0)

    def forward(self, model: nn.Module, x: Tensor) -> ObjectiveOutput:
        q = model.encoder(x)
        z = q.rsample()
        recon = model.likelihood(model.decoder(z)).log_prob(x)
        p = model.prior()
        if self.free_bits > 0:
            per_dim = kl_per_dimension(q, p)
            if per_dim is None:
                raise ZooError(
                    "free_bits needs a posterior and a prior that factorise over the latent dimensions "
                    f"(Independent) with an analytic KL; {type(q).__name__} and {type(p).__name__} do not"
                )
            kl = per_dim.sum(-1)
            kl_loss = torch.clamp(per_dim.mean(0), min=self.free_bits).sum()
        else:
            kl = kl_term(q, p, z)
            kl_loss = kl.mean()
        weight = self.kl_weight()
        if self.training:
            self.steps += 1
        loss = -recon.mean() + weight * kl_loss
        logs = {"recon": -recon.mean().detach(), "kl": kl.mean().detach()}
        if self.warmup:
            logs["kl_weight"] = torch.as_tensor(weight).detach()
        return ObjectiveOutput(loss, logs)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, warmup={self.warmup}, free_bits={self.free_bits}"


class _Weighted(Objective):
    """Shared machinery for the importance-weighted objectives: draw, decode, log weights."""

    def log_weights(self, model: nn.Module, x: Tensor, samples: int, *, dreg: bool = False) -> Tensor:
        """log p(x, z_k) - log q(z_k|x) for ``samples`` draws per example, [samples, B].

        With ``dreg``, the gradient reaching the encoder is the doubly reparameterised one
        (Tucker et al. 2018): log q is evaluated with the encoder's parameters detached, and the
        gradient flowing back through each z_k is scaled by its normalised weight.
        """
        q = model.encoder(x)
        z = q.rsample((samples,))
        log_w = iw_log_weights(model, x, q, z, detach="encoder" if dreg else None).log_w
        if dreg and z.requires_grad:
            normalised = torch.softmax(log_w.detach(), dim=0)
            z.register_hook(lambda grad: grad * normalised.unsqueeze(-1).to(grad.dtype))
        return log_w


class IWAE(_Weighted):
    """The importance-weighted bound of Burda et al. (2015) with ``samples`` draws per example.

    ``dreg=True`` gives the encoder the doubly reparameterised gradient estimator of Tucker et
    al. (2018), whose variance does not grow with ``samples``; the decoder's and prior's
    gradients are IWAE's own. The loss value is the same either way. At ``samples=1`` the loss
    equals the (Monte-Carlo KL) negative ELBO.
    """

    def __init__(self, samples: int = 5, dreg: bool = False) -> None:
        super().__init__()
        self.samples = _positive_int("samples", samples)
        self.dreg = bool(dreg)

    def forward(self, model: nn.Module, x: Tensor) -> ObjectiveOutput:
        log_w = self.log_weights(model, x, self.samples, dreg=self.dreg)
        bound = log_mean_exp(log_w, 0)
        if self.dreg:
            # Value: the bound. Gradient: sum_k w~_k grad log w_k (the z path is rescaled by the hook).
            weights = torch.softmax(log_w.detach(), dim=0)
            surrogate = (weights * log_w).sum(0)
            objective = surrogate - surrogate.detach() + bound.detach()
        else:
            objective = bound
        return ObjectiveOutput(-objective.mean(), {"iw_bound": bound.mean().detach()})

    def extra_repr(self) -> str:
        return f"samples={self.samples}, dreg={self.dreg}"


class MIWAE(_Weighted):
    """The mean of ``estimates`` (M) IWAE bounds of ``samples`` (K) draws each (Rainforth et al. 2018)."""

    def __init__(self, estimates: int = 8, samples: int = 8) -> None:
        super().__init__()
        self.estimates = _positive_int("estimates", estimates)
        self.samples = _positive_int("samples", samples)

    def forward(self, model: nn.Module, x: Tensor) -> ObjectiveOutput:
        log_w = self.log_weights(model, x, self.estimates * self.samples)
        bounds = log_mean_exp(log_w.view(self.estimates, self.samples, -1), 1)  # [M, B]
        return ObjectiveOutput(-bounds.mean(), {"miwae_bound": bounds.mean().detach()})

    def extra_repr(self) -> str:
        return f"estimates={self.estimates}, samples={self.samples}"


class PIWAE(_Weighted):
    """Partially importance-weighted (Rainforth et al. 2018): the encoder climbs MIWAE(M, K), the
    decoder and prior climb IWAE(M x K), from the same M x K draws.

    The encoder's part is evaluated a second time with the generative parameters detached, so
    each side receives exactly its own bound's gradient.
    """

    def __init__(self, estimates: int = 8, samples: int = 8) -> None:
        super().__init__()
        self.estimates = _positive_int("estimates", estimates)
        self.samples = _positive_int("samples", samples)

    def forward(self, model: nn.Module, x: Tensor) -> ObjectiveOutput:
        m, k = self.estimates, self.samples
        q = model.encoder(x)
        z = q.rsample((m * k,))
        # Generative side: IWAE(M x K) with the draws and the posterior's density held fixed.
        gen = iw_log_weights(model, x, q, z.detach())
        iwae = log_mean_exp(gen._replace(log_qz=gen.log_qz.detach()).log_w, 0)
        # Inference side: MIWAE(M, K), gradients to the encoder only.
        log_w_inf = iw_log_weights(model, x, q, z, detach="generative").log_w
        miwae = log_mean_exp(log_w_inf.view(m, k, -1), 1).mean(0)
        objective = iwae + (miwae - miwae.detach())
        return ObjectiveOutput(
            -objective.mean(), {"iw_bound": iwae.mean().detach(), "miwae_bound": miwae.mean().detach()}
        )

    def extra_repr(self) -> str:
        return f"estimates={self.estimates}, samples={self.samples}"


class CIWAE(_Weighted):
    """``beta`` x ELBO + (1 - ``beta``) x IWAE, both from the same ``samples`` draws (Rainforth et al. 2018)."""

    def __init__(self, samples: int = 64, beta: float = 0.05) -> None:
        super().__init__()
        self.samples = _positive_int("samples", samples)
        self.beta = _finite_at_least("beta", beta, 0.0)
        if self.beta > 1:
            raise ZooError(f"beta must lie in [0, 1] (got {beta!r})")

    def forward(self, model: nn.Module, x: Tensor) -> ObjectiveOutput:
        log_w = self.log_weights(model, x, self.samples)
        elbo, iwae = log_w.mean(0), log_mean_exp(log_w, 0)
        objective = self.beta * elbo + (1 - self.beta) * iwae
        return ObjectiveOutput(-objective.mean(), {"iw_bound": iwae.mean().detach(), "elbo": elbo.mean().detach()})

    def extra_repr(self) -> str:
        return f"samples={self.samples}, beta={self.beta}"


class AE(Objective):
    """A plain autoencoder's loss: -log p(x|z) at z = q.rsample() (the code of a deterministic
    encoder), averaged over the batch, in nats per example; logged as ``recon``.

    It never asks q(z|x) for a density (``needs_density = False``), so it trains deterministic
    encoders (:class:`zoo.PointMass`); on a stochastic encoder it is the ELBO's reconstruction term
    alone. No prior enters it: sample through a prior fitted to the codes afterwards.
    """

    needs_density = False

    def __init__(self) -> None:  # recorded (no options), so a run writes it down by id
        super().__init__()

    def forward(self, model: nn.Module, x: Tensor) -> ObjectiveOutput:
        z = model.encoder(x).rsample()
        loss = -model.likelihood(model.decoder(z)).log_prob(x).mean()
        return ObjectiveOutput(loss, {"recon": loss.detach()})


class TrainingStep(nn.Module):
    """The model and its objective as one module, so ``DistributedDataParallel`` (and
    ``torch.compile``) see the whole loss computation as one forward pass."""

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: Tensor) -> ObjectiveOutput:
        """The objective's loss plus the auxiliary losses the model's components added in this pass
        (each logged as ``aux_<name>``)."""
        take_aux_losses(self.model)  # none left over from a pass outside a training step
        out = self.objective(self.model, x)
        aux = take_aux_losses(self.model)
        if not aux:
            return out
        loss, logs = out[0], dict(out[1])
        for name, value in aux.items():
            loss = loss + value
            logs[f"aux_{name}"] = value.detach()
        return ObjectiveOutput(loss, logs, getattr(out, "losses", None))


def take_aux_losses(model: nn.Module) -> dict[str, Tensor]:
    """The auxiliary losses the components of ``model`` added since the last call (each the mean of
    its values, one per forward pass), forgetting them."""
    found: dict[str, list[Tensor]] = {}
    for module in model.modules():
        pending = module.__dict__.pop("_zoo_aux_losses", None)
        for name, value in pending or ():
            found.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else torch.stack(values).mean() for name, values in found.items()}
