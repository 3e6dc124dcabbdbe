"""The von Mises-Fisher distribution on the unit sphere S^(m-1) in R^m, the uniform distribution
on it, and the KL between the two (Davidson et al. 2018, "Hyperspherical Variational Auto-Encoders").

The vMF density with respect to the sphere's surface measure is
``C_m(kappa) exp(kappa mu^T z)``, ``log C_m(kappa) = (m/2 - 1) log kappa - (m/2) log(2 pi) - log I_(m/2-1)(kappa)``,
with ``I_v`` the modified Bessel function of the first kind. torch has no ``I_v`` of any order, so
:func:`log_bessel_iv` wraps scipy's exponentially scaled ``ive`` in an autograd function whose
gradient is the identity ``d/dk log I_v(k) = I_(v+1)(k) / I_v(k) + v / k``.

Sampling is Wood's (1994) algorithm: the component ``w = mu^T z`` is drawn by rejection from a
scaled Beta proposal, a direction orthogonal to ``e_1`` uniformly, and a Householder reflection
takes ``e_1`` to ``mu``. The draw of ``w`` is a differentiable function of ``kappa`` given the
accepted Beta variate, which gives the reparameterised part of the gradient of Davidson et al.
(sec. 3.3; Naesseth et al. 2017); like the authors' implementation, the rejection sampler's
correction term is left out. The KL to the uniform prior is analytic and registered with
``torch.distributions.kl.register_kl``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.special
import torch
from torch import Tensor
from torch.distributions import Beta, Distribution, constraints
from torch.distributions.kl import register_kl

import zoo

#: Wood's rejection loop accepts well over half the proposals; a batch that is not done after this
#: many proposals per draw has a non-finite concentration.
MAX_PROPOSALS = 1000


def _log_ive_numpy(order: float, kappa: np.ndarray) -> np.ndarray:
    """log(I_v(k) e^-k) in float64; where ``ive`` underflows (small k, large v), the leading term
    of the series, v log(k / 2) - log Gamma(v + 1) - k."""
    with np.errstate(divide="ignore"):
        value = np.log(scipy.special.ive(order, kappa))
    small = ~np.isfinite(value)
    if small.any():
        k = kappa[small]
        value[small] = order * np.log(k / 2) - scipy.special.gammaln(order + 1) - k
    return value


class _LogIve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kappa: Tensor, order: float) -> Tensor:
        k = kappa.detach().double().cpu().numpy()
        value = _log_ive_numpy(order, k)
        ratio = np.exp(_log_ive_numpy(order + 1, k) - value)  # I_(v+1) / I_v
        ctx.save_for_backward(kappa, torch.as_tensor(ratio, device=kappa.device, dtype=kappa.dtype))
        ctx.order = order
        return torch.as_tensor(value, device=kappa.device, dtype=kappa.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        kappa, ratio = ctx.saved_tensors
        # d/dk log(I_v(k) e^-k) = I_(v+1)/I_v + v/k - 1
        return grad * (ratio + ctx.order / kappa - 1), None


def log_bessel_iv(order: float, kappa: Tensor) -> Tensor:
    """log I_order(kappa), elementwise, for kappa > 0, differentiable in kappa (not in the order)."""
    return _LogIve.apply(kappa, float(order)) + kappa


def bessel_ratio(order: float, kappa: Tensor) -> Tensor:
    """I_(order+1)(kappa) / I_order(kappa), differentiable in kappa."""
    return torch.exp(_LogIve.apply(kappa, float(order) + 1) - _LogIve.apply(kappa, float(order)))


def log_sphere_area(m: int) -> float:
    """log of the surface area of the unit sphere S^(m-1) in R^m: 2 pi^(m/2) / Gamma(m/2)."""
    return math.log(2) + (m / 2) * math.log(math.pi) - math.lgamma(m / 2)


class VonMisesFisher(Distribution):
    """vMF(``loc``, ``concentration``) on the unit sphere in R^m.

    ``loc`` [..., m] is the mean direction (unit vectors), ``concentration`` [...] (kappa > 0) how
    tightly the mass gathers around it. Batch shape [...], event shape [m]. ``log_prob`` is a
    density with respect to the sphere's surface measure. ``mean`` is the mean direction (the
    spherical mean, as torch's ``VonMises`` does on the circle); the expectation in R^m is
    ``mean_resultant_length * loc``, with ``mean_resultant_length`` A_m(kappa) = I_(m/2)/I_(m/2-1).
    """

    arg_constraints = {"loc": constraints.real_vector, "concentration": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, concentration: Tensor, validate_args: bool | None = False) -> None:
        if loc.dim() < 1 or loc.shape[-1] < 2:
            raise zoo.ZooError(f"a von Mises-Fisher needs loc shaped [..., m] with m >= 2, got {tuple(loc.shape)}")
        concentration = torch.as_tensor(concentration, dtype=loc.dtype, device=loc.device)
        batch_shape = torch.broadcast_shapes(loc.shape[:-1], concentration.shape)
        self.loc = loc.expand(*batch_shape, loc.shape[-1])
        self.concentration = concentration.expand(batch_shape)
        self.dim = loc.shape[-1]
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return VonMisesFisher(self.loc.expand(*batch_shape, self.dim), self.concentration.expand(batch_shape))

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def mean_resultant_length(self) -> Tensor:
        """A_m(kappa) = E[mu^T z]: the length of the vMF's expectation in R^m."""
        return bessel_ratio(self.dim / 2 - 1, self.concentration)

    def log_normalizer(self) -> Tensor:
        """log C_m(kappa), [...]."""
        m, kappa = self.dim, self.concentration
        return (m / 2 - 1) * torch.log(kappa) - (m / 2) * math.log(2 * math.pi) - log_bessel_iv(m / 2 - 1, kappa)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.log_normalizer() + self.concentration * (self.loc * value).sum(-1)

    def entropy(self) -> Tensor:
        return -self.log_normalizer() - self.concentration * self.mean_resultant_length

    def _sample_w(self, shape: torch.Size) -> Tensor:
        """w = mu^T z by Wood's rejection sampler, [*shape], differentiable in kappa through b."""
        m1 = self.dim - 1
        kappa = self.concentration.double().expand(shape)
        root = torch.sqrt(4 * kappa**2 + m1**2)
        b = m1 / (2 * kappa + root)
        x0 = (1 - b) / (1 + b)
        c = kappa * x0 + m1 * torch.log(1 - x0**2)
        proposal = Beta(
            torch.full((), m1 / 2, dtype=torch.float64, device=kappa.device),
            torch.full((), m1 / 2, dtype=torch.float64, device=kappa.device),
        )
        eps = torch.zeros(shape, dtype=torch.float64, device=kappa.device)
        todo = torch.ones(shape, dtype=torch.bool, device=kappa.device)
        bd, x0d, cd, kd = b.detach(), x0.detach(), c.detach(), kappa.detach()
        for _ in range(MAX_PROPOSALS):
            if not todo.any():
                break
            e = proposal.sample(shape)
            w = (1 - (1 + bd) * e) / (1 - (1 - bd) * e)
            u = torch.rand(shape, dtype=torch.float64, device=kappa.device)
            accept = todo & (kd * w + m1 * torch.log(1 - x0d * w) - cd >= torch.log(u))
            eps = torch.where(accept, e, eps)
            todo = todo & ~accept
        if todo.any():
            raise zoo.ZooError("von Mises-Fisher sampling did not finish: is the concentration finite and positive?")
        return (1 - (1 + b) * eps) / (1 - (1 - b) * eps)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)[:-1]
        w = self._sample_w(shape).to(self.loc.dtype).unsqueeze(-1)
        v = torch.randn(*shape, self.dim - 1, dtype=self.loc.dtype, device=self.loc.device)
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        x = torch.cat([w, torch.sqrt((1 - w**2).clamp_min(0)) * v], dim=-1)
        # The Householder reflection taking e_1 to loc (the identity when loc is e_1).
        e1 = torch.zeros_like(self.loc)
        e1[..., 0] = 1
        u = e1 - self.loc
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return x - 2 * (x * u).sum(-1, keepdim=True) * u

    def sample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def __repr__(self) -> str:
        return f"VonMisesFisher(loc: {tuple(self.loc.shape)}, concentration: {tuple(self.concentration.shape)})"


class HypersphericalUniform(Distribution):
    """The uniform distribution on the unit sphere S^(m-1) in R^m: batch shape [], event shape
    [m]; ``log_prob`` is the constant -log(area) at every point (a density with respect to the
    sphere's surface measure, as the vMF's is). ``anchor`` gives the device and dtype."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, dim: int, anchor: Tensor | None = None, validate_args: bool | None = False) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise zoo.ZooError(f"the uniform distribution on a sphere needs dimension m >= 2 (got {dim!r})")
        self.dim = dim
        self.anchor = anchor if anchor is not None else torch.zeros(())
        super().__init__(torch.Size(), torch.Size([dim]), validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return torch.zeros(self.dim, dtype=self.anchor.dtype, device=self.anchor.device)

    def log_prob(self, value: Tensor) -> Tensor:
        # 0 * value keeps log p(z) in z's graph, with a zero gradient.
        return (0 * value).sum(-1) - log_sphere_area(self.dim)

    def entropy(self) -> Tensor:
        return torch.full((), log_sphere_area(self.dim), dtype=self.anchor.dtype, device=self.anchor.device)

    def sample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        z = torch.randn(shape, dtype=self.anchor.dtype, device=self.anchor.device)
        return z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@register_kl(VonMisesFisher, HypersphericalUniform)
def _kl_vmf_uniform(q: VonMisesFisher, p: HypersphericalUniform) -> Tensor:
    if q.dim != p.dim:
        raise zoo.ZooError(f"KL between a vMF on S^{q.dim - 1} and the uniform on S^{p.dim - 1}: the spheres differ")
    return -q.entropy() + log_sphere_area(q.dim)
