"""The Poincare ball of curvature -c and the wrapped normal on it (Mathieu et al. 2019, "Continuous
Hierarchical Representations with Poincare Variational Auto-Encoders", sec. 3).

The ball is {x in R^d : c ||x||^2 < 1} with the metric lambda_x^2 times the Euclidean one,
lambda_x = 2 / (1 - c ||x||^2). Its geodesics, exponential and logarithmic maps are written with
Moebius addition (Ganea et al. 2018). A wrapped normal N^W(mu, Sigma) draws v ~ N(0, Sigma),
takes v / lambda_0 as a tangent vector at the origin (its Riemannian norm is ||v||), parallel
transports it to mu and maps it onto the ball with exp_mu. Its log density, with respect to the
ball's Riemannian volume (lambda_x^d dx), is

    log N(lambda_mu log_mu(z); 0, Sigma) - (d - 1) log( sinh(sqrt(c) r) / (sqrt(c) r) ),   r = d_c(mu, z)

the second term being the log-determinant of exp_mu's Jacobian.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution, Normal, constraints

import zoo

_MIN_NORM = 1e-15


def boundary_margin(dtype: torch.dtype) -> float:
    """How far inside the boundary points are kept, as a fraction of the radius (pvae's choice)."""
    return 1e-5 if dtype == torch.float64 else 4e-3


def _norm(x: Tensor) -> Tensor:
    # sqrt of a clamped square: a finite gradient at 0
    return x.pow(2).sum(-1, keepdim=True).clamp_min(_MIN_NORM).sqrt()


def check_curvature(c: object) -> float:
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf:
        raise zoo.ZooError(f"the curvature c must be a positive number (the ball's curvature is -c; got {c!r})")
    return float(c)


def project(x: Tensor, c: float) -> Tensor:
    """x moved radially inside the ball when it lies on or beyond the boundary."""
    most = (1 - boundary_margin(x.dtype)) / math.sqrt(c)
    norm = _norm(x)
    return torch.where(norm > most, x / norm * most, x)


def conformal_factor(x: Tensor, c: float) -> Tensor:
    """lambda_x = 2 / (1 - c ||x||^2), [..., 1]."""
    return 2 / (1 - c * x.pow(2).sum(-1, keepdim=True)).clamp_min(_MIN_NORM)


def mobius_add(x: Tensor, y: Tensor, c: float) -> Tensor:
    """x (+)_c y."""
    xy = (x * y).sum(-1, keepdim=True)
    x2 = x.pow(2).sum(-1, keepdim=True)
    y2 = y.pow(2).sum(-1, keepdim=True)
    numerator = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    return numerator / (1 + 2 * c * xy + c**2 * x2 * y2).clamp_min(_MIN_NORM)


def _artanh(x: Tensor) -> Tensor:
    x = x.clamp(-1 + 1e-15, 1 - 1e-15) if x.dtype == torch.float64 else x.clamp(-1 + 1e-7, 1 - 1e-7)
    return torch.atanh(x)


def expmap0(v: Tensor, c: float) -> Tensor:
    """exp_0(v): the tangent vector v at the origin mapped onto the ball."""
    sc = math.sqrt(c)
    norm = _norm(v)
    return project(torch.tanh(sc * norm) * v / (sc * norm), c)


def logmap0(y: Tensor, c: float) -> Tensor:
    """log_0(y): the point y as a tangent vector at the origin."""
    sc = math.sqrt(c)
    norm = _norm(y)
    return _artanh(sc * norm) * y / (sc * norm)


def expmap(x: Tensor, u: Tensor, c: float) -> Tensor:
    """exp_x(u) for a tangent vector u at x."""
    sc = math.sqrt(c)
    norm = _norm(u)
    step = torch.tanh(sc * conformal_factor(x, c) * norm / 2) * u / (sc * norm)
    return project(mobius_add(x, step, c), c)


def logmap(x: Tensor, y: Tensor, c: float) -> Tensor:
    """log_x(y): the tangent vector at x pointing to y, of Riemannian length d_c(x, y)."""
    sc = math.sqrt(c)
    sub = mobius_add(-x, y, c)
    norm = _norm(sub)
    return 2 / (sc * conformal_factor(x, c)) * _artanh(sc * norm) * sub / norm


def distance(x: Tensor, y: Tensor, c: float) -> Tensor:
    """The geodesic distance d_c(x, y) = 2 / sqrt(c) artanh(sqrt(c) ||-x (+) y||), [...]."""
    sc = math.sqrt(c)
    return (2 / sc * _artanh(sc * _norm(mobius_add(-x, y, c)))).squeeze(-1)


def _log_sinhc(x: Tensor) -> Tensor:
    """log(sinh(x) / x) for x >= 0, exact near 0 (x^2 / 6) and for large x."""
    small = x < 1e-2
    safe = torch.where(small, torch.ones_like(x), x)
    large = safe + torch.log1p(-torch.exp(-2 * safe)) - math.log(2) - torch.log(safe)
    return torch.where(small, x**2 / 6, large)


class WrappedNormal(Distribution):
    """The wrapped normal N^W(``loc``, diag(``scale``^2)) on the Poincare ball of curvature -``c``.

    ``loc`` [..., d] is a point of the ball, ``scale`` [..., d] (or broadcastable) the standard
    deviations of the Gaussian in the tangent space. Batch shape [...], event shape [d]. ``log_prob``
    is a density with respect to the ball's Riemannian volume (points on or outside the boundary
    are first moved just inside it); ``mean`` is ``loc`` (the distribution's Frechet mean).

    Samples and densities are computed in float64 whatever the parameters' dtype, and returned in
    it: near the boundary, Moebius addition in float32 loses the digits that tell nearby points
    apart, and a density that is wrong there is one an optimiser learns to exploit (a negative
    Monte-Carlo KL).
    """

    arg_constraints = {"loc": constraints.real_vector, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, c: float = 1.0, validate_args: bool | None = False) -> None:
        self.c = check_curvature(c)
        scale = torch.as_tensor(scale, dtype=loc.dtype, device=loc.device)
        shape = torch.broadcast_shapes(loc.shape, scale.shape)
        self.loc, self.scale = loc.expand(shape), scale.expand(shape)
        super().__init__(shape[:-1], shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        shape = (*torch.Size(batch_shape), self.event_shape[0])
        return WrappedNormal(self.loc.expand(shape), self.scale.expand(shape), self.c)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    def rsample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        loc, scale = self.loc.double(), self.scale.double()
        v = scale * torch.randn(shape, dtype=torch.float64, device=loc.device)
        # transporting v / lambda_0 from the origin to loc multiplies it by lambda_0 / lambda_loc
        return expmap(loc, v / conformal_factor(loc, self.c), self.c).to(self.loc.dtype)

    def sample(self, sample_shape: torch.Size | Sequence[int] = torch.Size()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        loc, scale = self.loc.double(), self.scale.double()
        value = project(value.double(), self.c)
        v = conformal_factor(loc, self.c) * logmap(loc, value, self.c)
        gaussian = Normal(torch.zeros_like(scale), scale, validate_args=False).log_prob(v).sum(-1)
        r = distance(loc, value, self.c)
        d = self.event_shape[0]
        return (gaussian - (d - 1) * _log_sinhc(math.sqrt(self.c) * r)).to(self.loc.dtype)

    def __repr__(self) -> str:
        return f"WrappedNormal(loc: {tuple(self.loc.shape)}, c: {self.c})"
