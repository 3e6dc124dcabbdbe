"""Discretized logistic distributions for 8-bit images scaled to [0, 1] (x = k / 255).

Salimans, Karpathy, Chen & Kingma, "PixelCNN++: Improving the PixelCNN with discretized logistic
mixture likelihood and other modifications" (ICLR 2017), section 2.1: a continuous logistic is
integrated over each grey level's bin of width 1/255, and the first and last bins absorb the
tails, so the 256 probabilities sum to one and ``log_prob`` is a true log-likelihood.

Numerics. PixelCNN++ computes sigmoid(upper edge) - sigmoid(lower edge) and falls back to the
density at the bin's centre times its width when that difference is tiny. Here the difference
is taken in log space on the left tail (a bin's mass is symmetric in its distance from the
location), which stays exact for arbitrarily small probabilities; the mid-bin fallback remains
for bins much narrower than the scale, where the two CDF values are too close to subtract.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, constraints
from torch.nn.functional import logsigmoid

#: Grey levels of an 8-bit image.
BINS = 256
#: Log-scales are clamped from below (PixelCNN++ uses -7 on [-1, 1], i.e. about -7.7 on [0, 1]):
#: the most confident logistic puts 99% of its mass in one interior bin.
MIN_LOG_SCALE = -8.0
#: Bins narrower than this many scales use the mid-bin density times the width (see module doc).
_MIDPOINT_BELOW = 1e-2


def quantize(x: Tensor, bins: int = BINS) -> Tensor:
    """Round values to the nearest of the ``bins`` grey levels in [0, 1]."""
    return torch.round(x.clamp(0.0, 1.0) * (bins - 1)) / (bins - 1)


def log_bin_mass(x: Tensor, loc: Tensor, log_scale: Tensor, bins: int = BINS) -> Tensor:
    """log P(grey level of x) under a logistic(loc, exp(log_scale)) discretized on [0, 1], elementwise.

    ``x`` is snapped to the nearest grey level. The first bin holds all mass below its upper edge
    and the last all mass above its lower edge.
    """
    width = 1.0 / (bins - 1)
    x = quantize(x, bins)
    inv_scale = torch.exp(-log_scale)
    u = (x - loc) * inv_scale  # the bin centre, in scales from the location
    half = 0.5 * width * inv_scale  # half the bin width, in scales

    # Interior bins: sigmoid(u + half) - sigmoid(u - half) is even in u; evaluate it at -|u|,
    # where log-sigmoid is accurate, as log(a - b) = log a + log(1 - b / a).
    v = -u.abs()
    log_upper = logsigmoid(v + half)
    log_ratio = logsigmoid(v - half) - log_upper
    tiny = torch.finfo(log_ratio.dtype).tiny
    log_interior = log_upper + torch.log((-torch.expm1(log_ratio)).clamp_min(tiny))
    log_midpoint = logsigmoid(u) + logsigmoid(-u) - log_scale + math.log(width)
    interior = torch.where(2 * half < _MIDPOINT_BELOW, log_midpoint, log_interior)

    first = logsigmoid(u + half)  # P(X < upper edge of bin 0)
    last = logsigmoid(-(u - half))  # P(X > lower edge of bin 255)
    return torch.where(x < 0.5 * width, first, torch.where(x > 1 - 0.5 * width, last, interior))


def _sample_logistic(loc: Tensor, log_scale: Tensor) -> Tensor:
    u = torch.rand_like(loc).clamp(1e-6, 1 - 1e-6)
    return loc + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))


class DiscretizedLogistic(Distribution):
    """Independent discretized logistics per element; ``log_prob`` sums over the last ``event_dims`` dims.

    ``loc`` and ``log_scale`` share one shape ``[*batch, *event]``. ``mean`` is the location
    clamped into [0, 1], the distribution's median up to rounding: a sharp image.
    """

    arg_constraints = {}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, loc: Tensor, log_scale: Tensor, event_dims: int, bins: int = BINS) -> None:
        self.loc, self.log_scale = torch.broadcast_tensors(loc, log_scale.clamp_min(MIN_LOG_SCALE))
        self.bins = bins
        self.event_dims = event_dims
        split = self.loc.dim() - event_dims
        super().__init__(self.loc.shape[:split], self.loc.shape[split:], validate_args=False)

    def log_prob(self, x: Tensor) -> Tensor:
        per_element = log_bin_mass(x, self.loc, self.log_scale, self.bins)
        return per_element.sum(dim=tuple(range(-self.event_dims, 0)))

    @property
    def mean(self) -> Tensor:
        return self.loc.clamp(0.0, 1.0)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        return quantize(_sample_logistic(self.loc.expand(shape), self.log_scale.expand(shape)), self.bins)


class DiscretizedLogisticMixture(Distribution):
    """A mixture of ``K`` discretized logistics per element (PixelCNN++'s likelihood for one channel).

    ``logits``, ``loc`` and ``log_scale`` are shaped ``[*batch, K, *event]``; each element of the
    event has its own mixture. ``log_prob`` sums over the event. ``mean`` is the mixture of the
    clamped locations.
    """

    arg_constraints = {}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, logits: Tensor, loc: Tensor, log_scale: Tensor, event_dims: int, bins: int = BINS) -> None:
        logits, self.loc, self.log_scale = torch.broadcast_tensors(logits, loc, log_scale.clamp_min(MIN_LOG_SCALE))
        self.component_dim = -event_dims - 1
        self.log_weights = torch.log_softmax(logits, dim=self.component_dim)
        self.bins = bins
        self.event_dims = event_dims
        split = self.loc.dim() - event_dims
        super().__init__(self.loc.shape[: split - 1], self.loc.shape[split:], validate_args=False)

    def log_prob(self, x: Tensor) -> Tensor:
        per_component = log_bin_mass(x.unsqueeze(self.component_dim), self.loc, self.log_scale, self.bins)
        per_element = torch.logsumexp(self.log_weights + per_component, dim=self.component_dim)
        return per_element.sum(dim=tuple(range(-self.event_dims, 0)))

    @property
    def mean(self) -> Tensor:
        return (self.log_weights.exp() * self.loc.clamp(0.0, 1.0)).sum(self.component_dim)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        k_dim = len(shape) + self.component_dim + 1  # the component axis, counted from the front
        choice = Categorical(logits=self.log_weights.movedim(self.component_dim, -1)).sample(sample_shape)
        index = choice.unsqueeze(k_dim)
        expanded = (*shape[:k_dim], self.loc.shape[self.component_dim], *shape[k_dim:])
        loc = self.loc.expand(expanded).gather(k_dim, index).squeeze(k_dim)
        log_scale = self.log_scale.expand(expanded).gather(k_dim, index).squeeze(k_dim)
        return quantize(_sample_logistic(loc, log_scale), self.bins)
