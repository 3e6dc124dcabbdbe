"""The Hamiltonian VAE bounds: z_0 ~ q(z|x) refined by K steps of (tempered) Hamiltonian dynamics on
log p(x, z), which needs the whole model (decoder, likelihood and prior), hence objectives.

* ``hvae`` (Caterini, Doucet & Sejdinovic, "Hamiltonian Variational Auto-Encoder", NeurIPS 2018):
  momentum rho_0 ~ N(0, I / beta_0), K leapfrog steps with a learnable step size, and after step k
  the momentum rescaled by sqrt(beta_{k-1} / beta_k) on the quadratic schedule
  1 / sqrt(beta_k) = (1 - 1 / sqrt(beta_0)) (k / K)^2 + 1 / sqrt(beta_0), so beta_K = 1.
  Leapfrog preserves volume and the tempering multiplies it by beta_0^(d/2), which cancels the
  1 / beta_0 of rho_0's density, so the bound is
  log p(x, z_K) + log N(rho_K; 0, I) - log q(z_0|x) - log N(gamma; 0, I), with gamma = sqrt(beta_0) rho_0.
* ``rhvae`` (Chadebec, Mantoux & Allassonnière, "Geometry-Aware Hamiltonian Variational
  Auto-Encoder", 2020): the same with a position-dependent metric, G(z)^-1 = sum_i L_i L_i^T
  exp(-||z - c_i||^2 / T^2) + lambda I over the batch's encoded means c_i and metric factors L_i,
  the momentum rho_0 ~ N(0, G(z_0) / beta_0), and the generalised (implicit) leapfrog of Riemannian
  manifold HMC solved by fixed-point iterations. Its bound adds log-determinants of G at both ends.

The step size (and, optionally, beta_0) are the objective's parameters: the trainer's model
optimizer steps them with the model's loss (``zoo.Trainer`` optimises the objective's parameters
with the model's unless an ``updates()`` entry claims them), and they are saved with the objective
in every checkpoint. The trainer's test metrics stay the ELBO of q(z_0|x) itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

import zoo

Gradient = Callable[[Tensor], tuple[Tensor, Tensor]]


def _count(name: str, value: object, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise zoo.ZooError(f"{name} must be an integer >= {least} (got {value!r})")
    return value


def _positive(name: str, value: object, most: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= most:
        bound = f"in (0, {most:g}]" if math.isfinite(most) else "> 0"
        raise zoo.ZooError(f"{name} must be a number {bound} (got {value!r})")
    return float(value)


def log_joint_and_gradient(model: nn.Module, x: Tensor, create_graph: bool) -> Gradient:
    """z -> (log p(x, z) [B], its gradient in z [B, L]) for the model's decoder, likelihood and prior."""

    def f(z: Tensor) -> tuple[Tensor, Tensor]:
        log_joint = model.likelihood(model.decoder(z)).log_prob(x) + model.prior().log_prob(z)
        (grad,) = torch.autograd.grad(log_joint.sum(), z, create_graph=create_graph)
        return log_joint, grad

    return f


def tempering(k: int, steps: int, sqrt_beta0: Tensor) -> Tensor:
    """sqrt(beta_k) on Caterini et al.'s quadratic schedule (beta_0 at k = 0, 1 at k = steps)."""
    inv = (1 - 1 / sqrt_beta0) * (k / steps) ** 2 + 1 / sqrt_beta0
    return 1 / inv


def leapfrog(z: Tensor, rho: Tensor, grad: Tensor, step: Tensor, gradient: Gradient) -> tuple[Tensor, ...]:
    """One leapfrog step for H(z, rho) = -log p(x, z) + |rho|^2 / 2 (``grad`` is d log p / dz at z).

    Returns (z', rho', log p(x, z'), its gradient); the map (z, rho) -> (z', rho') preserves volume
    and is reversible (negating rho' and stepping again returns to (z, -rho)).
    """
    rho = rho + 0.5 * step * grad
    z = z + step * rho
    log_joint, grad = gradient(z)
    rho = rho + 0.5 * step * grad
    return z, rho, log_joint, grad


def _standard_normal_log_prob(v: Tensor) -> Tensor:
    return -0.5 * (v * v).sum(-1) - 0.5 * v.shape[-1] * math.log(2 * math.pi)


class Metric:
    """The RHVAE's inverse metric G(z)^-1 = sum_n w_n(z) M_n + lambda I, w_n = exp(-|z - c_n|^2 / T^2),
    over centroids c_n [N, L] and M_n = L_n L_n^T [N, L, L]."""

    def __init__(self, centroids: Tensor, outer: Tensor, temperature: float, regularization: float) -> None:
        self.centroids, self.outer = centroids, outer
        self.t2, self.lam = temperature**2, regularization
        self.eye = torch.eye(centroids.shape[-1], dtype=centroids.dtype, device=centroids.device)

    def weights(self, z: Tensor) -> Tensor:
        c = self.centroids
        sq = (z * z).sum(-1, keepdim=True) - 2 * z @ c.T + (c * c).sum(-1)
        return torch.exp(-sq.clamp_min(0) / self.t2)  # [B, N]

    def inverse(self, z: Tensor) -> Tensor:
        """G(z)^-1, [B, L, L]."""
        return torch.einsum("bn,nij->bij", self.weights(z), self.outer) + self.lam * self.eye

    def gradient(self, z: Tensor, rho: Tensor) -> Tensor:
        """d/dz of 1/2 log det G(z) + 1/2 rho^T G(z)^-1 rho at fixed rho, in closed form:
        sum_n dw_n/dz (rho^T M_n rho - tr(G(z) M_n)) / 2, with dw_n/dz = -2 (z - c_n) w_n / T^2."""
        weights = self.weights(z)
        g_inv = torch.einsum("bn,nij->bij", weights, self.outer) + self.lam * self.eye
        g = torch.cholesky_inverse(torch.linalg.cholesky(g_inv))
        a = 0.5 * (torch.einsum("bi,nij,bj->bn", rho, self.outer, rho) - torch.einsum("bij,nij->bn", g, self.outer))
        wa = weights * a * (-2 / self.t2)
        return wa.sum(-1, keepdim=True) * z - wa @ self.centroids


class _Hamiltonian(zoo.Objective):
    """What both bounds share: options, the learnable step size and beta_0, the gradient mode."""

    cuda_graph_safe = False  # second-order autograd inside the step; not captured in a CUDA graph

    def __init__(self, steps: int, step_size: float, beta0: float, learn_step_size: bool, learn_beta0: bool) -> None:
        super().__init__()
        self.steps = _count("steps", steps)
        _positive("step_size", step_size)
        _positive("beta0", beta0, most=1.0)
        self.learn_step_size, self.learn_beta0 = bool(learn_step_size), bool(learn_beta0)
        log_step = torch.tensor(math.log(step_size))
        # beta_0 in (0, 1]: sqrt(beta_0) = sigmoid(raw), raw finite unless beta0 = 1.
        raw = torch.tensor(math.log(math.sqrt(beta0) / max(1 - math.sqrt(beta0), 1e-6)))
        if self.learn_step_size:
            self.log_step_size = nn.Parameter(log_step)
        else:
            self.register_buffer("log_step_size", log_step)
        if self.learn_beta0:
            self.raw_sqrt_beta0 = nn.Parameter(raw)
        else:
            self.register_buffer("raw_sqrt_beta0", raw)

    def step_size(self) -> Tensor:
        return self.log_step_size.exp()

    def sqrt_beta0(self) -> Tensor:
        return torch.sigmoid(self.raw_sqrt_beta0)

    def _start(self, model: nn.Module, x: Tensor):
        q = model.encoder(x)
        z0 = q.rsample()
        log_q0 = q.log_prob(z0)
        # Second-order gradients while training; first-order, detached, in eval mode or under no_grad.
        create_graph = self.training and torch.is_grad_enabled()
        if not create_graph:
            z0 = z0.detach()
        return q, z0, log_q0, create_graph

    def _logs(self, bound: Tensor, log_q0: Tensor, recon: Tensor) -> dict[str, Tensor]:
        return {
            "bound": bound.mean().detach(),
            "recon": -recon.mean().detach(),
            "step_size": self.step_size().detach(),
            "beta0": self.sqrt_beta0().detach() ** 2,
        }


class HVAE(_Hamiltonian):
    """The tempered Hamiltonian VAE bound of Caterini et al. 2018 (negated, averaged over the batch).

    ``steps`` leapfrog steps (K) of size ``step_size`` (learned when ``learn_step_size``, one size
    for every latent dimension, as pythae's), initial inverse temperature ``beta0`` in (0, 1]
    (learned when ``learn_beta0``). At ``beta0=1`` and a vanishing step size it is the one-sample
    ELBO with a Monte-Carlo KL.
    """

    def __init__(
        self,
        steps: int = 3,
        step_size: float = 1e-3,
        beta0: float = 0.3,
        learn_step_size: bool = True,
        learn_beta0: bool = False,
    ) -> None:
        super().__init__(steps, step_size, beta0, learn_step_size, learn_beta0)

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        _, z0, log_q0, create_graph = self._start(model, x)
        sqrt_beta0, step = self.sqrt_beta0(), self.step_size()
        with torch.enable_grad():
            z = z0 if z0.requires_grad else z0.requires_grad_()
            gradient = log_joint_and_gradient(model, x, create_graph)
            gamma = torch.randn_like(z0)
            rho = gamma / sqrt_beta0
            log_joint, grad = gradient(z)
            previous = sqrt_beta0
            for k in range(1, self.steps + 1):
                z, rho, log_joint, grad = leapfrog(z, rho, grad, step, gradient)
                current = tempering(k, self.steps, sqrt_beta0)
                rho = rho * (previous / current)
                previous = current
                if not create_graph:
                    z, rho, grad = z.detach().requires_grad_(), rho.detach(), grad.detach()
            log_prior_z = model.prior().log_prob(z)
            recon = log_joint - log_prior_z
        bound = log_joint + _standard_normal_log_prob(rho) - log_q0 - _standard_normal_log_prob(gamma)
        if not create_graph:
            bound, recon = bound.detach(), recon.detach()
        return zoo.ObjectiveOutput(-bound.mean(), self._logs(bound, log_q0, recon))

    def extra_repr(self) -> str:
        return f"steps={self.steps}, learn_step_size={self.learn_step_size}, learn_beta0={self.learn_beta0}"


class RHVAE(_Hamiltonian):
    """The Riemannian Hamiltonian VAE bound of Chadebec et al. 2020 (negated, averaged over the batch).

    The inverse metric is G(z)^-1 = sum_i L_i L_i^T exp(-||z - c_i||^2 / ``temperature``^2) +
    ``regularization`` I over the batch: c_i the means of q(z|x_i) and L_i the lower-triangular
    factors the encoder returns as ``q.metric_factors`` ([B, L, L], e.g. the ``rhvae-conv`` encoder);
    with an encoder that gives none, L_i = I (pythae's starting metric). Each generalised leapfrog
    step solves its two implicit equations with ``fixed_point`` iterations. ``steps``,
    ``step_size``, ``beta0`` and the ``learn_*`` switches are as for ``hvae``.
    """

    def __init__(
        self,
        steps: int = 3,
        step_size: float = 1e-3,
        beta0: float = 0.3,
        temperature: float = 1.5,
        regularization: float = 0.01,
        fixed_point: int = 3,
        learn_step_size: bool = False,
        learn_beta0: bool = False,
    ) -> None:
        super().__init__(steps, step_size, beta0, learn_step_size, learn_beta0)
        self.temperature = _positive("temperature", temperature)
        self.regularization = _positive("regularization", regularization)
        self.fixed_point = _count("fixed_point", fixed_point)

    def _factors(self, q, z0: Tensor) -> Tensor:
        factors = getattr(q, "metric_factors", None)
        B, L = z0.shape
        if factors is None:
            return torch.eye(L, dtype=z0.dtype, device=z0.device).expand(B, L, L)
        if not isinstance(factors, Tensor) or tuple(factors.shape) != (B, L, L):
            got = tuple(factors.shape) if isinstance(factors, Tensor) else type(factors).__name__
            raise zoo.ZooError(f"rhvae: q.metric_factors must be a tensor [{B}, {L}, {L}] (got {got})")
        return factors

    def forward(self, model: nn.Module, x: Tensor) -> zoo.ObjectiveOutput:
        q, z0, log_q0, create_graph = self._start(model, x)
        factors = self._factors(q, z0)
        centroids, outer = q.mean, factors @ factors.transpose(-1, -2)  # [B, L], [B, L, L]
        if not create_graph:
            centroids, outer = centroids.detach(), outer.detach()
        metric = Metric(centroids, outer, self.temperature, self.regularization)
        inverse_metric, metric_gradient = metric.inverse, metric.gradient

        sqrt_beta0, step = self.sqrt_beta0(), self.step_size()
        with torch.enable_grad():
            z = z0 if z0.requires_grad else z0.requires_grad_()
            gradient = log_joint_and_gradient(model, x, create_graph)
            gamma = torch.randn_like(z0)
            chol = torch.linalg.cholesky(inverse_metric(z))  # G^-1 = C C^T, so C^-T gamma ~ N(0, G)
            rho = torch.linalg.solve_triangular(chol.transpose(-1, -2), gamma.unsqueeze(-1), upper=True).squeeze(-1)
            rho = rho / sqrt_beta0
            half_log_det_inv0 = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # 1/2 log det G^-1(z_0)
            log_joint, grad = gradient(z)
            previous = sqrt_beta0
            for k in range(1, self.steps + 1):
                half = rho
                for _ in range(self.fixed_point):  # rho_1/2 = rho - eps/2 dH/dz(z, rho_1/2)
                    half = rho - 0.5 * step * (metric_gradient(z, half) - grad)
                velocity = (inverse_metric(z) @ half.unsqueeze(-1)).squeeze(-1)
                z_new = z
                for _ in range(self.fixed_point):  # z' = z + eps/2 (G^-1(z) + G^-1(z')) rho_1/2
                    z_new = z + 0.5 * step * (velocity + (inverse_metric(z_new) @ half.unsqueeze(-1)).squeeze(-1))
                z = z_new
                log_joint, grad = gradient(z)
                rho = half - 0.5 * step * (metric_gradient(z, half) - grad)
                current = tempering(k, self.steps, sqrt_beta0)
                rho = rho * (previous / current)
                previous = current
                if not create_graph:
                    z, rho, grad = z.detach().requires_grad_(), rho.detach(), grad.detach()
            g_inv = inverse_metric(z)
            quad = (rho.unsqueeze(-2) @ g_inv @ rho.unsqueeze(-1)).flatten()
            log_momentum = 0.5 * torch.logdet(g_inv) - 0.5 * quad - 0.5 * z.shape[-1] * math.log(2 * math.pi)
            recon = log_joint - model.prior().log_prob(z)
        bound = log_joint + log_momentum - log_q0 - _standard_normal_log_prob(gamma) - half_log_det_inv0
        if not create_graph:
            bound, recon = bound.detach(), recon.detach()
        return zoo.ObjectiveOutput(-bound.mean(), self._logs(bound, log_q0, recon))

    def extra_repr(self) -> str:
        return (
            f"steps={self.steps}, temperature={self.temperature}, regularization={self.regularization}, "
            f"fixed_point={self.fixed_point}"
        )
