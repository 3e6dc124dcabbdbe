"""The flows plugin's RealNVP prior: a bijection whose inverse undoes it, and a density that
follows the change of variables exactly (a closed-form Gaussian case and brute-force Jacobians)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian
from torch.distributions import Independent, Normal
from torch.distributions.transforms import ComposeTransform

from zoo_flows.components import AffineCoupling, RealNVPPrior


def scrambled_prior(latent_size: int = 5, layers: int = 4, seed: int = 0) -> RealNVPPrior:
    """A float64 prior whose couplings are far from the identity."""
    torch.manual_seed(seed)
    prior = RealNVPPrior(latent_size, layers=layers, hidden=16).double()
    with torch.no_grad():
        for p in prior.parameters():
            p.normal_(0.0, 0.7)
    return prior


def test_coupling_is_a_bijection_on_vectors():
    coupling = scrambled_prior().transforms()[0]
    assert isinstance(coupling, AffineCoupling)
    assert coupling.bijective and coupling.sign == 1
    assert coupling.domain.event_dim == coupling.codomain.event_dim == coupling.event_dim == 1


def test_inverse_of_forward_is_the_identity():
    prior = scrambled_prior()
    flow = ComposeTransform(prior.transforms())
    z = 2 * torch.randn(64, 5, dtype=torch.float64)
    y = flow(z)
    assert not torch.allclose(y, z, atol=1e-2)  # the flow does something
    assert torch.allclose(flow.inv(y), z, atol=1e-10)
    assert torch.allclose(flow(flow.inv(z)), z, atol=1e-10)


def test_log_abs_det_jacobian_matches_autograd():
    for coupling in scrambled_prior().transforms():
        x = torch.randn(3, 5, dtype=torch.float64)
        y = coupling(x)
        cached = coupling.log_abs_det_jacobian(x, y)  # reuses the forward pass's log-scales
        fresh = coupling.log_abs_det_jacobian(x.clone(), y.clone())  # recomputes them
        brute = torch.stack([torch.linalg.slogdet(jacobian(coupling, row)).logabsdet for row in x])
        assert torch.allclose(cached, brute, atol=1e-10) and torch.allclose(fresh, brute, atol=1e-10)


def test_log_prob_matches_the_change_of_variables_by_brute_force():
    prior = scrambled_prior()
    flow = ComposeTransform(prior.transforms())
    base = Independent(Normal(torch.zeros(5, dtype=torch.float64), 1.0), 1)
    z = torch.randn(6, 5, dtype=torch.float64)
    expected = torch.stack(
        [base.log_prob(flow.inv(row)) + torch.linalg.slogdet(jacobian(flow.inv, row)).logabsdet for row in z]
    )
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-9)


def test_log_prob_is_the_closed_form_gaussian_for_constant_couplings():
    """Conditioners that ignore their input make each coupling an elementwise affine map, so the
    flow pushes N(0, I) to N(b, diag(a^2)) with a and b known."""
    latent_size, layers = 4, 3
    prior = RealNVPPrior(latent_size, layers=layers, hidden=8).double()
    a = torch.ones(latent_size, dtype=torch.float64)
    b = torch.zeros(latent_size, dtype=torch.float64)
    torch.manual_seed(1)
    with torch.no_grad():
        for mask, net in zip(prior.masks, prior.couplings):
            shift, raw = torch.randn(latent_size, dtype=torch.float64), torch.randn(latent_size, dtype=torch.float64)
            last = net.net[-1]
            last.weight.zero_()
            last.bias.copy_(torch.cat([shift, raw]))
            net.scale.uniform_(0.5, 1.5)
            log_scale = (net.scale * torch.tanh(raw)) * (1 - mask)
            a, b = a * log_scale.exp(), b * log_scale.exp() + shift * (1 - mask)
    z = torch.randn(10, latent_size, dtype=torch.float64) * 2
    closed_form = Independent(Normal(b, a), 1).log_prob(z)
    assert torch.allclose(prior.log_prob(z), closed_form, atol=1e-10)
    assert not torch.allclose(a, torch.ones_like(a))  # the case is not the trivial one


def test_flow_starts_close_to_the_standard_normal():
    torch.manual_seed(0)
    prior = RealNVPPrior(8)
    z = torch.randn(32, 8)
    standard = Independent(Normal(torch.zeros(8), 1.0), 1).log_prob(z)
    assert torch.allclose(prior.log_prob(z), standard, atol=0.05)


def test_samples_and_gradients():
    torch.manual_seed(0)
    prior = RealNVPPrior(6, layers=2, hidden=8)
    assert prior.sample(7).shape == (7, 6)
    z = prior().rsample((5,))
    assert z.shape == (5, 6)
    (z.sum() + prior.log_prob(z).sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prior.parameters())


def test_options_are_checked():
    import zoo

    with pytest.raises(zoo.ZooError, match="layers"):
        RealNVPPrior(4, layers=0)
    with pytest.raises(zoo.ZooError, match="activation"):
        RealNVPPrior(4, activation="swish")
