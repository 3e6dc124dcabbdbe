"""The helpers zoo offers plugin authors (``zoo.diagonal_gaussian``), and what the first-party plugins
promise about the components built with them: checkpoints keep loading (parameter names and shapes
are pinned), and a refused option is one :class:`zoo.ZooError` line."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import zoo


# -- zoo.diagonal_gaussian ------------------------------------------------------------------------

def test_diagonal_gaussian_is_torchs_independent_normal():
    mean, log_var = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    q = zoo.diagonal_gaussian(mean, log_var)
    assert isinstance(q, Independent) and isinstance(q.base_dist, Normal)
    assert q.batch_shape == (2, 3) and q.event_shape == (5,) and q.has_rsample
    reference = Independent(Normal(mean, torch.exp(0.5 * log_var)), 1)
    z = q.rsample()
    torch.testing.assert_close(q.log_prob(z), reference.log_prob(z))
    torch.testing.assert_close(q.stddev, log_var.mul(0.5).exp())
    # the analytic KL of torch's registry still applies (the ELBO's closed form)
    prior = Independent(Normal(torch.zeros(5), torch.ones(5)), 1)
    torch.testing.assert_close(kl_divergence(q, prior), kl_divergence(reference, prior))


@pytest.mark.parametrize("dtype, expected", [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                             (torch.float32, torch.float32), (torch.float64, torch.float64)])
def test_diagonal_gaussian_computes_in_at_least_float32(dtype, expected):
    q = zoo.diagonal_gaussian(torch.zeros(4, 3, dtype=dtype), torch.zeros(4, 3, dtype=dtype))
    assert q.mean.dtype == expected and q.stddev.dtype == expected


def test_diagonal_gaussian_passes_gradients_to_both_inputs():
    mean, log_var = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    zoo.diagonal_gaussian(mean, log_var).rsample().sum().backward()
    assert mean.grad is not None and log_var.grad is not None and log_var.grad.abs().sum() > 0


def test_diagonal_gaussian_lets_a_nan_through_to_the_loss():
    """No argument validation: the trainer reports a non-finite loss, not an error from inside forward."""
    q = zoo.diagonal_gaussian(torch.full((2, 3), float("nan")), torch.zeros(2, 3))
    assert torch.isnan(q.rsample()).all()
