"""The RHVAE's encoder: zoo's conv network to a diagonal Gaussian q(z|x) and the lower-triangular
factor L(x) of the Riemannian metric (Chadebec et al. 2020), returned on the posterior as
``q.metric_factors`` for the ``rhvae`` objective."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import zoo


class RHVAEConvEncoder(zoo.Encoder):
    """x -> ``downsamplings`` 3x3 stride-2 convs (``channels`` wide, doubling, ReLU) -> one conv over
    the remaining map to the mean and log-variance of q(z|x) and the metric factor L(x) [L, L]:
    ``exp`` of a predicted diagonal and a free strictly lower triangle, so L L^T is positive definite.

    The metric head shares the conv network with the Gaussian (pythae's RHVAE gives it a separate
    MLP on x); at ``channels`` 16 and ``downsamplings`` 2 the network is ``conv-mnist``'s.
    """

    def __init__(self, latent_size: int, data_shape: tuple[int, ...], channels: int = 16, downsamplings: int = 2):
        super().__init__()
        for name, value in (("channels", channels), ("downsamplings", downsamplings)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise zoo.ZooError(f"{name} must be a positive integer (got {value!r})")
        shape = tuple(data_shape)
        if len(shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in shape):
            raise zoo.ZooError(f"the rhvae-conv encoder takes images shaped [channels, height, width], got {shape}")
        c, h, w = shape
        if min(h, w) < 2**downsamplings:
            most = max(min(h, w).bit_length() - 1, 1)
            raise zoo.ZooError(
                f"the rhvae-conv encoder with downsamplings={downsamplings} takes images of at least "
                f"{2**downsamplings}x{2**downsamplings} pixels, got {h}x{w}; set downsamplings to at most {most}"
            )
        self.latent_size = L = latent_size
        layers: list[nn.Module] = []
        for i in range(downsamplings):
            layers += [nn.Conv2d(c, channels * 2**i, 3, stride=2, padding=1), nn.ReLU()]
            c, h, w = channels * 2**i, (h - 1) // 2 + 1, (w - 1) // 2 + 1
        self.lower = L * (L - 1) // 2
        layers += [nn.Conv2d(c, 3 * L + self.lower, (h, w)), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.register_buffer("rows", torch.tril_indices(L, L, offset=-1), persistent=False)

    def forward(self, x: Tensor):
        L = self.latent_size
        out = self.net(x)
        out = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out  # fp32 under autocast
        mean, log_var, log_diag, lower = out.split([L, L, L, self.lower], dim=-1)
        factors = torch.diag_embed(log_diag.exp())
        if self.lower:
            factors[:, self.rows[0], self.rows[1]] = lower
        q = zoo.diagonal_gaussian(mean, log_var)
        q.metric_factors = factors
        return q
