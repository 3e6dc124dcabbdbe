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


class CoupledDiscretizedLogisticMixture(Distribution):
    """PixelCNN++'s mixture for colour pixels: one mixture per pixel over its C channels jointly.

    Component k draws channel 0 from a discretized logistic at ``loc[k, 0]``, and channel c from one
    at ``loc[k, c] + sum_{j < c} coeff[k, c, j] * x_j``: the channels already drawn shift the next one's
    location linearly (green by red, blue by red and green for RGB). ``logits`` [*batch, K, H, W];
    ``loc`` and ``log_scale`` [*batch, K, C, H, W]; ``coeffs`` [*batch, K, C(C-1)/2, H, W], ordered
    (1, 0), (2, 0), (2, 1), ... The event is [C, H, W]; ``log_prob`` sums over it. ``mean`` is the
    mixture of each component's ancestral mean (each channel's clamped location given the means before
    it); ``sample`` draws the channels in order.
    """

    arg_constraints = {}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, logits: Tensor, loc: Tensor, log_scale: Tensor, coeffs: Tensor, bins: int = BINS) -> None:
        self.loc, self.log_scale = torch.broadcast_tensors(loc, log_scale.clamp_min(MIN_LOG_SCALE))
        self.coeffs = coeffs
        self.log_weights = torch.log_softmax(logits, dim=-3)  # over K
        self.bins = bins
        self.channels = self.loc.shape[-3]
        batch = self.loc.shape[:-4]
        super().__init__(batch, self.loc.shape[-3:], validate_args=False)

    def _shifted(self, x: Tensor) -> Tensor:
        """Each component's channel locations given the values ``x`` [*batch, C, H, W] of the channels before."""
        x = x.unsqueeze(-4)  # [*batch, 1, C, H, W]
        locs, n = [self.loc[..., 0, :, :]], 0
        for c in range(1, self.channels):
            shift = sum(self.coeffs[..., n + j, :, :] * x[..., j, :, :] for j in range(c))
            locs.append(self.loc[..., c, :, :] + shift)
            n += c
        return torch.stack(torch.broadcast_tensors(*locs), dim=-3)

    def log_prob(self, x: Tensor) -> Tensor:
        x = quantize(x, self.bins)
        per_channel = log_bin_mass(x.unsqueeze(-4), self._shifted(x), self.log_scale, self.bins)
        per_pixel = torch.logsumexp(self.log_weights + per_channel.sum(-3), dim=-3)  # [*batch, H, W]
        return per_pixel.sum(dim=(-2, -1))

    def _ancestral(self, draw) -> Tensor:
        """Channels in order, each from ``draw(location, log_scale)`` given those before: [*, K, C, H, W]."""
        values, n = [], 0
        for c in range(self.channels):
            loc = self.loc[..., c, :, :]
            for j in range(c):
                loc = loc + self.coeffs[..., n + j, :, :] * values[j]
            n += c
            values.append(draw(loc, self.log_scale[..., c, :, :]))
        return torch.stack(values, dim=-3)

    @property
    def mean(self) -> Tensor:
        means = self._ancestral(lambda loc, log_scale: loc.clamp(0.0, 1.0))
        return (self.log_weights.exp().unsqueeze(-3) * means).sum(-4)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape)
        k = Categorical(logits=self.log_weights.movedim(-3, -1)).sample(shape)  # [*sample, *batch, H, W]
        picked = k.unsqueeze(-3).unsqueeze(-4)  # [*sample, *batch, 1, 1, H, W]

        def pick(t: Tensor) -> Tensor:
            t = t.expand(*shape, *t.shape)
            index = picked.expand(*t.shape[:-4], 1, t.shape[-3], *t.shape[-2:])
            return t.gather(-4, index).squeeze(-4)

        loc, log_scale, coeffs = pick(self.loc), pick(self.log_scale), pick(self.coeffs)
        values, n = [], 0
        for c in range(self.channels):
            mu = loc[..., c, :, :]
            for j in range(c):
                mu = mu + coeffs[..., n + j, :, :] * values[j]
            n += c
            values.append(quantize(_sample_logistic(mu, log_scale[..., c, :, :]), self.bins))
        return torch.stack(values, dim=-3)
