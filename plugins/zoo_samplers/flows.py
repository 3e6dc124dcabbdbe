"""``maf``, ``iaf`` and ``realnvp``: normalizing flows on R^L fitted to the codes by maximum
likelihood with Adam, pythae's ``MAFSampler`` and ``IAFSampler`` plus a RealNVP.

A flow maps a code z to noise u with an invertible function f whose Jacobian determinant is cheap,
so log p(z) = log N(f(z); 0, I) + log |det df/dz|, and draws z = f^-1(u). Each flow here first
standardises the codes with the mean and standard deviation of the training codes, then applies
its blocks; the autoregressive ones reverse the coordinates between blocks and the couplings
alternate their halves, so every coordinate conditions every other.

* MAF (Papamakarios et al. 2017): autoregressive blocks whose shift and log-scale are MADE outputs
  of the *code*: the density takes one pass per block, a draw L passes.
* IAF (Kingma et al. 2016): the same blocks conditioned on the *noise*: a draw takes one pass, the
  density L passes (so fitting it by maximum likelihood is L times slower than MAF's).
* RealNVP (Dinh et al. 2017): affine couplings on alternating halves, one pass either way.

pythae's defaults: 2 MADE blocks of 3 hidden layers of 128 units, Adam at 1e-4, batches of 64,
100 epochs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

import zoo
from zoo_samplers.fitting import check_codes, check_training, standard_normal_nll, train

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (MADE's connectivity)."""

    def __init__(self, inputs: int, outputs: int, mask: Tensor) -> None:
        super().__init__(inputs, outputs)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation (Germain et al. 2015): outputs (shift,
    log-scale) for each coordinate i that depend only on the coordinates before i.

    Inputs have degrees 1..L, hidden units cycle through 1..L-1, and a unit of degree d sees the
    units of degree <= d below it; output i sees hidden units of degree < i. The log-scale is
    ``scale * tanh(raw)`` with a learned per-coordinate ``scale``, and the last layer starts at zero,
    so a block starts as the identity.
    """

    def __init__(self, size: int, hidden: int, layers: int) -> None:
        super().__init__()
        degrees = [torch.arange(1, size + 1)]
        for _ in range(layers):
            degrees.append(torch.arange(hidden) % max(1, size - 1) + 1)
        net: list[nn.Module] = []
        for below, above in zip(degrees, degrees[1:]):
            net += [MaskedLinear(len(below), len(above), (above[:, None] >= below[None, :]).float()), nn.ReLU()]
        out_mask = (degrees[0][:, None] > degrees[-1][None, :]).float()
        self.out = MaskedLinear(len(degrees[-1]), 2 * size, out_mask.repeat(2, 1))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.net = nn.Sequential(*net)
        self.scale = nn.Parameter(torch.ones(size))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = self.out(self.net(x)).chunk(2, dim=-1)
        return shift, self.scale * torch.tanh(raw)


class AutoregressiveBlock(nn.Module):
    """u = (z - shift) * exp(-log_scale), with (shift, log_scale) a MADE of z (``on="code"``, MAF)
    or of u (``on="noise"``, IAF). The direction whose conditioner input is known takes one pass;
    the other is solved one coordinate at a time."""

    reverses = True  # the next block sees the coordinates in the opposite order

    def __init__(self, size: int, hidden: int, layers: int, on: str) -> None:
        super().__init__()
        self.size, self.on = size, on
        self.made = MADE(size, hidden, layers)

    def _solve(self, known: Tensor, to_noise: bool) -> tuple[Tensor, Tensor]:
        """The other side of the block from ``known``, coordinate by coordinate, and the log-scales."""
        out = torch.zeros_like(known)
        for i in range(self.size):
            shift, log_scale = self.made(out)
            if to_noise:
                value = (known[:, i] - shift[:, i]) * torch.exp(-log_scale[:, i])
            else:
                value = known[:, i] * torch.exp(log_scale[:, i]) + shift[:, i]
            out = torch.cat([out[:, :i], value[:, None], out[:, i + 1 :]], dim=1)
        return out, self.made(out)[1]

    def to_noise(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(u, log |det du/dz|)."""
        if self.on == "code":
            shift, log_scale = self.made(z)
            return (z - shift) * torch.exp(-log_scale), -log_scale.sum(-1)
        u, log_scale = self._solve(z, to_noise=True)
        return u, -log_scale.sum(-1)

    def to_code(self, u: Tensor) -> Tensor:
        if self.on == "noise":
            shift, log_scale = self.made(u)
            return u * torch.exp(log_scale) + shift
        return self._solve(u, to_noise=False)[0]


class CouplingBlock(nn.Module):
    """RealNVP's affine coupling: the coordinates where ``mask`` is 1 pass through and give the
    shift and log-scale (``scale * tanh``) of the others through an MLP of two hidden layers."""

    reverses = False  # the masks alternate instead

    def __init__(self, size: int, hidden: int, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)
        self.net = zoo.mlp([size, hidden, hidden, 2 * size], nn.ReLU)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(size))

    def _params(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = self.net(kept).chunk(2, dim=-1)
        free = 1 - self.mask
        return shift * free, self.scale * torch.tanh(raw) * free

    def to_noise(self, z: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._params(z * self.mask)
        return (z - shift) * torch.exp(-log_scale), -log_scale.sum(-1)

    def to_code(self, u: Tensor) -> Tensor:
        shift, log_scale = self._params(u * self.mask)
        return u * torch.exp(log_scale) + shift


class FlowDistribution(Distribution):
    """The distribution of a fitted flow: ``log_prob``, ``sample`` and ``rsample`` over codes of
    any leading shape, through the flow's own :meth:`FlowSampler.log_prob` and :meth:`FlowSampler.draw`."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def __init__(self, flow: FlowSampler) -> None:
        self.flow = flow
        super().__init__(torch.Size(), torch.Size([flow.latent_size]), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.flow.log_prob(value)

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape)
        return self.flow.draw(shape.numel()).reshape(*shape, self.flow.latent_size)


class FlowSampler(zoo.Sampler):
    """A flow of ``blocks`` over standardised codes, fitted by maximum likelihood (see the module docs)."""

    kind = "flow"

    def __init__(self, latent_size: int, epochs: int, batch_size: int, lr: float) -> None:
        super().__init__()
        check_training(self.kind, epochs, batch_size, lr)
        self.latent_size = latent_size
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.register_buffer("loc", torch.zeros(latent_size))
        self.register_buffer("spread", torch.ones(latent_size))
        self.blocks = nn.ModuleList()

    def to_noise(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(u, log |det du/dz|) for codes [N, L]."""
        x = (z - self.loc) / self.spread
        log_det = -torch.log(self.spread).sum().expand(len(z))
        for block in self.blocks:
            x, block_log_det = block.to_noise(x)
            log_det = log_det + block_log_det
            x = x.flip(-1) if block.reverses else x
        return x, log_det

    def to_code(self, u: Tensor) -> Tensor:
        for block in reversed(self.blocks):
            u = block.to_code(u.flip(-1) if block.reverses else u)
        return u * self.spread + self.loc

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) for codes of any leading shape [..., L]."""
        lead = z.shape[:-1]
        u, log_det = self.to_noise(z.reshape(-1, self.latent_size))
        log_p = -0.5 * u.pow(2).sum(-1) - self.latent_size * _HALF_LOG_2PI + log_det
        return log_p.reshape(lead)

    def draw(self, n: int) -> Tensor:
        """``n`` codes, differentiable in the flow's parameters."""
        return self.to_code(torch.randn(n, self.latent_size, device=self.loc.device, dtype=self.loc.dtype))

    def sample(self, n: int) -> Tensor:
        with torch.no_grad():
            return self.draw(n)

    def forward(self) -> FlowDistribution:
        return FlowDistribution(self)

    def fit(self, codes: Tensor, epochs: int | None = None, seed: int = 0, log=None) -> dict[str, float]:
        """Maximum likelihood on ``codes`` with Adam (``epochs`` overrides the option); returns the
        last epoch's mean negative log-likelihood and the mean log-likelihood of all codes."""
        codes = check_codes(codes, self.latent_size, self.kind).to(self.loc.device)
        epochs = self.epochs if epochs is None else epochs
        check_training(self.kind, epochs, self.batch_size, self.lr)
        self.loc.copy_(codes.mean(0))
        self.spread.copy_(codes.std(0).clamp_min(1e-6) if len(codes) > 1 else torch.ones_like(self.loc))
        torch.manual_seed(seed)
        figures = train(
            self,
            lambda batch: -self.log_prob(batch).mean(),
            codes,
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=seed,
            log=log,
            what=self.kind,
        )
        with torch.no_grad():
            log_likelihood = torch.cat([self.log_prob(part) for part in codes.split(4096)]).mean()
        return {
            "log_likelihood": float(log_likelihood),
            "standard_normal_log_likelihood": -standard_normal_nll(codes),
            **figures,
        }


class MAFSampler(FlowSampler):
    """Masked autoregressive flow: ``blocks`` MADE blocks of ``layers`` hidden layers of ``hidden`` units."""

    kind = "maf"
    #: what each block's autoregressive network reads: the code (MAF) or the noise (IAF)
    conditioned_on = "code"

    def __init__(
        self,
        latent_size: int,
        blocks: int = 2,
        hidden: int = 128,
        layers: int = 3,
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-4,
    ) -> None:
        super().__init__(latent_size, epochs, batch_size, lr)
        _check_shape(self.kind, blocks=blocks, hidden=hidden, layers=layers)
        self.blocks.extend(
            AutoregressiveBlock(latent_size, hidden, layers, on=self.conditioned_on) for _ in range(blocks)
        )


class IAFSampler(MAFSampler):
    """Inverse autoregressive flow: MAF's blocks conditioned on the noise (fast draws, slow density)."""

    kind = "iaf"
    conditioned_on = "noise"


class RealNVPSampler(FlowSampler):
    """RealNVP: ``couplings`` affine couplings on alternating halves of the code, each with an MLP of
    two hidden layers of ``hidden`` units."""

    kind = "realnvp"

    def __init__(
        self,
        latent_size: int,
        couplings: int = 4,
        hidden: int = 128,
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-4,
    ) -> None:
        super().__init__(latent_size, epochs, batch_size, lr)
        _check_shape(self.kind, couplings=couplings, hidden=hidden)
        parity = torch.arange(latent_size) % 2  # coupling k keeps the coordinates of parity k % 2
        self.blocks.extend(CouplingBlock(latent_size, hidden, (parity == k % 2).float()) for k in range(couplings))


def _check_shape(what: str, **sizes: object) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise zoo.ZooError(f"{what} option {name} must be a positive integer (got {value!r})")
