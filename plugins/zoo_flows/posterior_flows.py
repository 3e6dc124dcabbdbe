"""Flow posteriors: q(z|x) as a diagonal Gaussian pushed through K flow steps whose parameters come
from the encoder.

* Inverse autoregressive flow (Kingma et al., "Improved Variational Inference with Inverse
  Autoregressive Flow", NeurIPS 2016): each step is z <- sigma * z + (1 - sigma) * m with
  (m, s) = MADE(z, h), sigma = sigmoid(s), the numerically stable gated update of the paper, and a
  context h from the encoder feeding every MADE. Steps alternate the variable order.
* Planar flows (Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015):
  z <- z + u_hat tanh(w^T z + b) with amortised u, w, b per step and u_hat the invertible
  reparameterisation of u (w^T u_hat >= -1).

The encoders return a :class:`FlowPosterior`, a :class:`torch.distributions.TransformedDistribution`
whose ``rsample`` is reparameterised and whose ``log_prob(z)`` is log q0(z_0) - sum_k log|det J_k|.
Each transform caches its last input and output (torch's ``cache_size=1``), so ``log_prob`` of the
sample just drawn costs no inversion; any other ``z`` is inverted: IAF sequentially, in L passes of
its MADE; a planar step by solving its scalar equation for w^T z by bisection, followed by one
Newton step written with autograd so that gradients flow through the inverse.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal, TransformedDistribution, constraints
from torch.distributions.transforms import Transform

import zoo


def _count(name: str, value: object, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise zoo.ZooError(f"{name} must be an integer >= {least} (got {value!r})")
    return value


# -- the conv network the encoders share -------------------------------------------------------


class ConvTrunk(nn.Module):
    """zoo's conv encoder network: ``downsamplings`` 3x3 stride-2 convs (``channels`` wide, doubling
    at each, ReLU), then one conv over the whole remaining map to ``outputs`` numbers per image.

    With channels 16 and downsamplings 2 it is the ``conv-mnist`` network with a wider last layer.
    """

    def __init__(self, what: str, data_shape, outputs: int, channels: int = 16, downsamplings: int = 2) -> None:
        super().__init__()
        _count("channels", channels)
        _count("downsamplings", downsamplings)
        shape = tuple(data_shape)
        if len(shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in shape):
            raise zoo.ZooError(f"{what} takes images shaped [channels, height, width], got {shape}")
        c, h, w = shape
        if min(h, w) < 2**downsamplings:
            most = min(h, w).bit_length() - 1
            raise zoo.ZooError(
                f"{what} with downsamplings={downsamplings} takes images of at least {2**downsamplings}x"
                f"{2**downsamplings} pixels, got {h}x{w}; set downsamplings to at most {max(most, 1)}"
            )
        layers: list[nn.Module] = []
        inputs = c
        for i in range(downsamplings):
            layers += [nn.Conv2d(inputs, channels * 2**i, 3, stride=2, padding=1), nn.ReLU()]
            inputs = channels * 2**i
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        layers += [nn.Conv2d(inputs, outputs, (h, w)), nn.Flatten()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out  # fp32 under autocast


def base_gaussian(mean: Tensor, log_var: Tensor) -> Independent:
    """The diagonal Gaussian q0(z_0|x) the flow starts from."""
    return Independent(Normal(mean, torch.exp(0.5 * log_var), validate_args=False), 1, validate_args=False)


class FlowPosterior(TransformedDistribution):
    """q(z|x): a base Gaussian through flow steps. ``mean`` is the image of the base mean under the
    flow (the code used for reconstructions and posterior means; the exact mean has no closed form)."""

    @property
    def mean(self) -> Tensor:
        z = self.base_dist.mean
        for t in self.transforms:
            z = t._call(z)  # not through the cache: the last sample's cache stays valid
        return z


# -- inverse autoregressive flow ---------------------------------------------------------------


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (MADE, Germain et al. 2015)."""

    def __init__(self, inputs: int, outputs: int, mask: Tensor) -> None:
        super().__init__(inputs, outputs)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """An autoregressive network z [..., L], h [..., C] -> (m, s), each [..., L], where output i
    depends on h and on the inputs before i in the order (reversed when ``reverse``).

    ``depth`` hidden layers of ``hidden`` ELU units; the context enters the first hidden layer
    unmasked. The last layer starts at zero with the gate's bias at ``forget_bias``, so the step
    starts near the identity (sigmoid(forget_bias) close to 1).
    """

    def __init__(self, latent: int, context: int, hidden: int, depth: int, reverse: bool, forget_bias: float) -> None:
        super().__init__()
        order = torch.arange(latent).flip(0) if reverse else torch.arange(latent)
        degree_in = order + 1  # 1..L
        self.register_buffer("degree_in", degree_in, persistent=False)
        degrees = [degree_in]
        layers = []
        for _ in range(depth):
            d = torch.arange(hidden) % max(latent - 1, 1) + 1
            layers.append(MaskedLinear(len(degrees[-1]), hidden, d[:, None] >= degrees[-1][None, :]))
            degrees.append(d)
        self.hidden = nn.ModuleList(layers)
        self.context = nn.Linear(context, hidden)
        out_deg = torch.cat([degree_in, degree_in])
        self.out = MaskedLinear(hidden, 2 * latent, out_deg[:, None] > degrees[-1][None, :])
        # Small output weights: each step starts near the identity (with the forget bias), yet every
        # weight of the MADE gets a gradient from the first step.
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)
        with torch.no_grad():
            self.out.bias[latent:] = forget_bias
        self.act = nn.ELU()

    def forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        a = self.act(self.hidden[0](z) + self.context(h))
        for layer in self.hidden[1:]:
            a = self.act(layer(a))
        m, s = self.out(a).chunk(2, dim=-1)
        return m, s


class IAFStep(Transform):
    """One IAF step y = sigma * x + (1 - sigma) * m, (m, s) = made(x, h), sigma = sigmoid(s).

    The Jacobian is triangular in the MADE's order, log|det| = sum log sigma. ``h`` [B, C] is the
    encoder's context for a batch; ``x`` may carry leading sample dimensions [..., B, L].
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def __init__(self, made: MADE, h: Tensor, cache_size: int = 1) -> None:
        super().__init__(cache_size=cache_size)
        self.made, self.h = made, h
        self._last: tuple[Tensor, Tensor, Tensor] | None = None

    def _gate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m, s = self.made(x, self.h)
        return m, s

    def _call(self, x: Tensor) -> Tensor:
        m, s = self._gate(x)
        sigma = torch.sigmoid(s)
        y = sigma * x + (1 - sigma) * m
        self._last = (x, y, nn.functional.logsigmoid(s).sum(-1))
        return y

    def _inverse(self, y: Tensor) -> Tensor:
        """Sequential: pass k fixes the k-th variable in the MADE's order, so L passes invert it."""
        x = torch.zeros_like(y)
        for _ in range(y.shape[-1]):
            m, s = self._gate(x)
            sigma = torch.sigmoid(s)
            x = (y - (1 - sigma) * m) / sigma
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        last = self._last
        if last is not None and last[0] is x and last[1] is y:
            return last[2]
        return nn.functional.logsigmoid(self._gate(x)[1]).sum(-1)


class IAFConvEncoder(zoo.Encoder):
    """zoo's conv network to (mean, log-variance, context h), then ``steps`` IAF steps (Kingma et al. 2016).

    Each step's MADE has ``depth`` hidden layers of ``hidden`` ELU units and reads h (``context``
    numbers); steps alternate the variable order. ``channels`` and ``downsamplings`` are the conv
    network's, as for ``conv-mnist``. ``forget_bias`` starts every gate near 1 (near the identity).
    """

    def __init__(
        self,
        latent_size: int,
        data_shape: tuple[int, ...],
        steps: int = 2,
        hidden: int = 128,
        depth: int = 2,
        context: int = 64,
        forget_bias: float = 2.0,
        channels: int = 16,
        downsamplings: int = 2,
    ) -> None:
        super().__init__()
        _count("steps", steps)
        _count("hidden", hidden)
        _count("depth", depth)
        _count("context", context)
        self.latent_size, self.context_size = latent_size, context
        self.trunk = ConvTrunk("the iaf-conv encoder", data_shape, 2 * latent_size + context, channels, downsamplings)
        self.steps = nn.ModuleList(
            MADE(latent_size, context, hidden, depth, reverse=bool(k % 2), forget_bias=forget_bias)
            for k in range(steps)
        )

    def forward(self, x: Tensor) -> FlowPosterior:
        out = self.trunk(x)
        mean, log_var, h = out.split([self.latent_size, self.latent_size, self.context_size], dim=-1)
        h = nn.functional.elu(h)
        return FlowPosterior(
            base_gaussian(mean, log_var), [IAFStep(made, h) for made in self.steps], validate_args=False
        )


# -- planar flows -------------------------------------------------------------------------------


PLANAR_MARGIN = 1e-4


def constrained_u(u: Tensor, w: Tensor) -> Tensor:
    """u_hat = u + (m(w^T u) - w^T u) w / ||w||^2 with m(a) = -1 + softplus(a), so w^T u_hat > -1
    and the planar step is invertible (Rezende & Mohamed 2015, appendix A.1). A margin of
    ``PLANAR_MARGIN`` keeps w^T u_hat above -1 in float32 too, where softplus of a very negative
    number rounds to 0 and log|det| would be -inf."""
    wu = (w * u).sum(-1, keepdim=True)
    m = nn.functional.softplus(wu) - 1 + PLANAR_MARGIN
    return u + (m - wu) * w / (w * w).sum(-1, keepdim=True).clamp_min(1e-12)


class PlanarStep(Transform):
    """One planar step y = x + u_hat tanh(w^T x + b) with per-example u_hat, w [B, L] and b [B].

    log|det| = log(1 + (1 - tanh^2(w^T x + b)) w^T u_hat), positive inside the log because
    w^T u_hat > -1. The inverse solves w^T y = a + (w^T u_hat) tanh(a + b) for a = w^T x (a
    monotone scalar equation, by bisection), then x = y - u_hat tanh(a + b).
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def __init__(self, u_hat: Tensor, w: Tensor, b: Tensor, cache_size: int = 1, iterations: int = 60) -> None:
        super().__init__(cache_size=cache_size)
        self.u_hat, self.w, self.b = u_hat, w, b
        self.wu = (w * u_hat).sum(-1)  # [B], > -1
        self.iterations = iterations

    def _call(self, x: Tensor) -> Tensor:
        return x + self.u_hat * torch.tanh((self.w * x).sum(-1, keepdim=True) + self.b[..., None])

    def _inverse(self, y: Tensor) -> Tensor:
        wy = (self.w * y).sum(-1)
        wu, b = self.wu.expand_as(wy), self.b.expand_as(wy)
        with torch.no_grad():  # f(a) = a + wu tanh(a + b) is increasing and |f(a) - a| <= |wu|
            lo, hi = wy - wu.abs() - 1e-6, wy + wu.abs() + 1e-6
            for _ in range(self.iterations):
                mid = (lo + hi) / 2
                below = mid + wu * torch.tanh(mid + b) < wy
                lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
            a = (lo + hi) / 2
        # One Newton step in autograd: the same value, and the implicit-function gradient.
        t = torch.tanh(a + b)
        a = a - (a + wu * t - wy) / (1 + wu * (1 - t * t))
        return y - self.u_hat * torch.tanh(a + b)[..., None]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        t = torch.tanh((self.w * x).sum(-1) + self.b)
        return torch.log1p((1 - t * t) * self.wu)


class PlanarConvEncoder(zoo.Encoder):
    """zoo's conv network to (mean, log-variance) and, per step, amortised (u, w, b), then ``steps``
    planar flow steps (Rezende & Mohamed 2015) with u constrained so each step is invertible.

    ``channels`` and ``downsamplings`` are the conv network's, as for ``conv-mnist``.
    """

    def __init__(
        self, latent_size: int, data_shape: tuple[int, ...], steps: int = 10, channels: int = 16, downsamplings: int = 2
    ) -> None:
        super().__init__()
        _count("steps", steps)
        self.latent_size, self.n_steps = latent_size, steps
        outputs = 2 * latent_size + steps * (2 * latent_size + 1)
        self.trunk = ConvTrunk("the planar-conv encoder", data_shape, outputs, channels, downsamplings)

    def forward(self, x: Tensor) -> FlowPosterior:
        out = self.trunk(x)
        L, K = self.latent_size, self.n_steps
        mean, log_var, flows = out.split([L, L, K * (2 * L + 1)], dim=-1)
        flows = flows.view(-1, K, 2 * L + 1)
        steps = []
        for k in range(K):
            u, w, b = flows[:, k].split([L, L, 1], dim=-1)
            steps.append(PlanarStep(constrained_u(u, w), w, b.squeeze(-1)))
        return FlowPosterior(base_gaussian(mean, log_var), steps, validate_args=False)


def flow_log_det(q: FlowPosterior, z0: Tensor) -> Tensor:
    """sum_k log|det J_k| along the flow from ``z0``: for tests and diagnostics."""
    total = torch.zeros(z0.shape[:-1], dtype=z0.dtype, device=z0.device)
    for t in q.transforms:
        z1 = t._call(z0)
        total = total + t.log_abs_det_jacobian(z0, z1)
        z0 = z1
    return total


__all__ = ["FlowPosterior", "IAFConvEncoder", "PlanarConvEncoder", "constrained_u", "flow_log_det"]
