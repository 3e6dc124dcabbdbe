"""The vamp plugin: the VampPrior is the uniform mixture of the encoder's posteriors at the
pseudo-inputs, its pseudo-inputs learn, and the gated MLP networks do what the paper says."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

import zoo
from zoo_vamp.components import GatedDense, GatedMLPDecoder, GatedMLPEncoder, VampPrior

DATA_SHAPE = (1, 4, 4)
LATENT = 6


def small_prior(pseudo_inputs: int = 7) -> VampPrior:
    torch.manual_seed(0)
    encoder = GatedMLPEncoder(LATENT, DATA_SHAPE, hidden=16)
    return VampPrior(encoder, LATENT, DATA_SHAPE, pseudo_inputs=pseudo_inputs)


def test_log_prob_is_the_logsumexp_of_the_components_minus_log_k():
    prior = small_prior(pseudo_inputs=7)
    z = torch.randn(5, LATENT)
    h = prior.encoder.body(prior.pseudo_inputs)
    means = prior.encoder.mean(h)
    log_vars = torch.clamp(prior.encoder.log_var(h), -6.0, 2.0)
    components = Normal(means, torch.exp(0.5 * log_vars)).log_prob(z.unsqueeze(1)).sum(-1)  # [5, 7]
    expected = torch.logsumexp(components, dim=1) - math.log(7)
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-5)
    assert prior().batch_shape == () and prior().event_shape == (LATENT,)


def test_pseudo_inputs_receive_gradients_and_learn():
    prior = small_prior(pseudo_inputs=7)
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-2)
    before = prior.pseudo_inputs.detach().clone()
    z = torch.randn(32, LATENT)
    loss = -prior.log_prob(z).mean()
    loss.backward()
    grad = prior.pseudo_input_weights.grad
    assert grad is not None and (grad.flatten(1).norm(dim=1) > 0).all()  # every pseudo-input is reached
    assert all(p.grad is not None for p in prior.encoder.parameters())
    optimizer.step()
    assert not torch.equal(before, prior.pseudo_inputs)
    assert -prior.log_prob(z).mean() < loss


def test_pseudo_inputs_are_images_in_the_unit_interval():
    prior = small_prior(pseudo_inputs=50)
    u = prior.pseudo_inputs
    assert u.shape == (50, *DATA_SHAPE)
    assert u.min() >= 0 and u.max() <= 1
    assert u.mean().item() == pytest.approx(0.05, abs=0.005)  # N(0.05, 0.01) start, inside [0, 1]
    with torch.no_grad():
        prior.pseudo_input_weights.fill_(3.0)
    assert torch.equal(prior.pseudo_inputs, torch.ones_like(u))  # hardtanh into [0, 1]


def test_samples_come_from_the_mixture():
    prior = small_prior()
    assert prior.sample(9).shape == (9, LATENT)


def test_prior_checks_its_encoder():
    encoder = GatedMLPEncoder(3, DATA_SHAPE, hidden=8)
    with pytest.raises(zoo.ZooError, match="latent_size"):
        VampPrior(encoder, LATENT, DATA_SHAPE)
    with pytest.raises(zoo.ZooError, match="pseudo-input"):
        VampPrior(GatedMLPEncoder(LATENT, DATA_SHAPE, hidden=8), LATENT, DATA_SHAPE, pseudo_inputs=0)


def test_gated_dense_is_linear_times_sigmoid_gate():
    torch.manual_seed(0)
    layer = GatedDense(5, 3)
    x = torch.randn(4, 5)
    value, gate = x @ layer.linear.weight.T + layer.linear.bias, x @ layer.gate.weight.T + layer.gate.bias
    expected = value * torch.sigmoid(gate)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_encoder_clips_the_log_variance_to_the_papers_range():
    torch.manual_seed(0)
    encoder = GatedMLPEncoder(LATENT, DATA_SHAPE, hidden=8)
    x = torch.rand(3, *DATA_SHAPE)
    with torch.no_grad():
        encoder.log_var.weight.zero_()
        encoder.log_var.bias.fill_(100.0)
        assert torch.allclose(encoder(x).base_dist.scale, torch.full((3, LATENT), math.exp(1.0)))
        encoder.log_var.bias.fill_(-100.0)
        assert torch.allclose(encoder(x).base_dist.scale, torch.full((3, LATENT), math.exp(-3.0)))
    q = encoder(x)
    assert isinstance(q, Independent) and q.batch_shape == (3,) and q.event_shape == (LATENT,)


def test_decoder_produces_any_output_shape():
    decoder = GatedMLPDecoder(LATENT, (2, 4, 4), hidden=8)
    assert decoder(torch.randn(5, 3, LATENT)).shape == (5, 3, 2, 4, 4)
