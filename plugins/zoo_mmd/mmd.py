"""Maximum mean discrepancy between two samples, with the kernels of the WAE and InfoVAE papers.

``mmd(a, b)`` is the unbiased U-statistic estimate of MMD^2 between the distributions that drew
the rows of ``a`` ([N, L]) and ``b`` ([M, L]) (Gretton et al. 2012, eq. 3):

    MMD^2 = sum_{i != j} k(a_i, a_j) / (N (N - 1)) + sum_{i != j} k(b_i, b_j) / (M (M - 1))
            - 2 sum_{i, j} k(a_i, b_j) / (N M)

Its expectation is the population MMD^2, which is zero exactly when the two distributions agree
(for a characteristic kernel), so a single estimate can be slightly negative.

The kernels follow Tolstikhin et al. (2018): with C = 2 L sigma^2 (L the latent size, sigma^2
the prior's variance per dimension, ``kernel_bandwidth`` sigma) and each ``scale`` s,

- ``imq``: the inverse multiquadratic k(x, y) = sum_s s C / (s C + ||x - y||^2);
- ``rbf``: the Gaussian k(x, y) = sum_s exp(-||x - y||^2 / (s C)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

import zoo

KERNELS = ("imq", "rbf")
#: The scales Tolstikhin et al.'s code and pythae sum the IMQ kernel over.
DEFAULT_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def check_kernel(kernel: object, bandwidth: object, scales: object) -> tuple[str, float, tuple[float, ...]]:
    """The kernel settings, validated: a one-line ZooError names the first bad one."""
    if kernel not in KERNELS:
        raise zoo.ZooError(f"kernel_choice must be one of {', '.join(KERNELS)} (got {kernel!r})")
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not 0 < bandwidth < math.inf:
        raise zoo.ZooError(f"kernel_bandwidth must be a positive number (got {bandwidth!r})")
    if isinstance(scales, (int, float)) and not isinstance(scales, bool):
        scales = [scales]
    if (
        not isinstance(scales, Sequence)
        or isinstance(scales, str)
        or not scales
        or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 < s < math.inf for s in scales)
    ):
        raise zoo.ZooError(f"scales must be a non-empty list of positive numbers (got {scales!r})")
    return kernel, float(bandwidth), tuple(float(s) for s in scales)


def kernel_matrix(a: Tensor, b: Tensor, kernel: str = "imq", bandwidth: float = 1.0, scales=DEFAULT_SCALES) -> Tensor:
    """k(a_i, b_j) for every pair of rows, [N, M]; see the module's docstring for the kernels."""
    base = 2.0 * a.shape[-1] * bandwidth**2
    squared = (a.unsqueeze(-2) - b.unsqueeze(-3)).pow(2).sum(-1)
    if kernel == "imq":
        return sum(s * base / (s * base + squared) for s in scales)
    if kernel == "rbf":
        return sum(torch.exp(-squared / (s * base)) for s in scales)
    raise zoo.ZooError(f"kernel_choice must be one of {', '.join(KERNELS)} (got {kernel!r})")


def _off_diagonal_mean(k: Tensor) -> Tensor:
    n = k.shape[-1]
    return (k.sum() - k.diagonal().sum()) / (n * (n - 1))


def mmd(a: Tensor, b: Tensor, kernel: str = "imq", bandwidth: float = 1.0, scales=DEFAULT_SCALES) -> Tensor:
    """The unbiased estimate of MMD^2 between the samples ``a`` [N, L] and ``b`` [M, L] (N, M >= 2)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[-1] != b.shape[-1]:
        raise zoo.ZooError(f"mmd takes two samples shaped [N, L] and [M, L], got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < 2 or len(b) < 2:
        raise zoo.ZooError(
            f"mmd needs at least 2 points in each sample (got {len(a)} and {len(b)}); use a larger batch"
        )
    within_a = _off_diagonal_mean(kernel_matrix(a, a, kernel, bandwidth, scales))
    within_b = _off_diagonal_mean(kernel_matrix(b, b, kernel, bandwidth, scales))
    across = kernel_matrix(a, b, kernel, bandwidth, scales).mean()
    return within_a + within_b - 2 * across


def prior_sample(prior: torch.nn.Module, n: int, like: Tensor) -> Tensor:
    """``n`` draws of the model's prior as a [n, L] tensor of ``like``'s dtype (reparameterised when
    the prior allows it, so a learnable prior is moved by the MMD too)."""
    p = prior()
    z = p.rsample((n,)) if p.has_rsample else p.sample((n,))
    return z.to(like.dtype)
