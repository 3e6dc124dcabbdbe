"""The objectives: agreement with the seed article's loss, the KL estimators, and the
importance-weighted bound."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

import zoo
from zoo import plugins
from zoo.objectives import has_analytic_kl, kl_term, log_mean_exp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import seed_reference  # noqa: E402  (bench/seed_reference.py: the seed article, transcribed once)

LATENT = 20


# -- the seed article as a reference ----------------------------------------------------------


def seed_layers(code_size: int) -> nn.Module:
    """The seed's ConvolutionalVAE, as transcribed once in bench/seed_reference.py."""
    return seed_reference.ConvolutionalVAE(code_size)


def seed_loss(seed: nn.Module, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The article's forward pass with the noise ``eps`` and its ``vae_loss``: BCE on the
    sigmoid outputs summed over the batch, plus the analytic KL of Kingma & Welling's appendix B."""
    mu, log_variance = seed.encoder(x).chunk(2, dim=1)  # [B, L, 1, 1]
    z = mu + eps.view_as(mu) * torch.exp(0.5 * log_variance)
    x_prime = seed.decoder(z)
    return seed_reference.vae_loss(x, x_prime, mu, log_variance)


@pytest.fixture
def fixed_noise(monkeypatch):
    """Make every Normal.rsample return loc + eps * scale for a noise tensor the test sets."""
    holder: dict[str, torch.Tensor] = {}

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        return self.loc + holder["eps"].expand(shape) * self.scale

    monkeypatch.setattr(Normal, "rsample", rsample)
    return holder


@pytest.mark.parametrize("data", ["uniform", "mnist"])
def test_negative_elbo_equals_the_seed_vae_loss(data, fixed_noise, request):
    torch.manual_seed(0)
    if data == "mnist":
        x = request.getfixturevalue("mnist_test_batch")[:32]
    else:
        x = torch.rand(32, 1, 28, 28)
    seed = seed_layers(LATENT)
    model = zoo.create("vae-conv-mnist")

    # The parameter names map one to one: encoder.N -> encoder.net.N, decoder.N -> decoder.net.N.
    mapped = {name.replace("coder.", "coder.net.", 1): value for name, value in seed.state_dict().items()}
    assert set(mapped) == set(model.state_dict())
    model.load_state_dict(mapped, strict=True)

    eps = torch.randn(len(x), LATENT)
    fixed_noise["eps"] = eps
    terms = model.elbo(x)
    expected = seed_loss(seed, x, eps)
    assert torch.allclose(-terms.elbo.sum(), expected, rtol=1e-5, atol=1e-3), (-terms.elbo.sum(), expected)

    # The parts agree too: recon is -BCE, kl the closed form.
    mu, log_variance = seed.encoder(x).flatten(1).chunk(2, dim=1)
    kl = -0.5 * (1 + log_variance - mu.pow(2) - log_variance.exp()).sum(1)
    assert torch.allclose(terms.kl, kl, rtol=1e-5, atol=1e-4)
    # ... and the likelihood's mean is the seed's sigmoid output.
    z = mu + eps * torch.exp(0.5 * log_variance)
    mean = model.likelihood(model.decoder(z)).mean
    assert torch.allclose(mean, seed.decoder(z[:, :, None, None]), atol=1e-6)


def test_seed_loss_gradients_match(fixed_noise):
    torch.manual_seed(1)
    x = torch.rand(8, 1, 28, 28)
    seed = seed_layers(LATENT)
    model = zoo.create("vae-conv-mnist")
    model.load_state_dict({n.replace("coder.", "coder.net.", 1): v for n, v in seed.state_dict().items()})
    fixed_noise["eps"] = torch.randn(8, LATENT)
    (-model.elbo(x).elbo.sum()).backward()
    seed_loss(seed, x, fixed_noise["eps"]).backward()
    for name, parameter in seed.named_parameters():
        ours = model.get_parameter(name.replace("coder.", "coder.net.", 1)).grad
        assert torch.allclose(ours, parameter.grad, rtol=1e-4, atol=1e-4), name


# -- KL: analytic when torch knows the pair, Monte Carlo otherwise ---------------------------


def posterior(batch: int = 6, latent: int = 5, seed: int = 0) -> Independent:
    generator = torch.Generator().manual_seed(seed)
    loc = torch.randn(batch, latent, generator=generator)
    scale = torch.rand(batch, latent, generator=generator) + 0.3
    return Independent(Normal(loc, scale), 1)


def prior(id: str, latent: int = 5, **options):
    return plugins.get_registry().get("prior", id).load()(latent_size=latent, **options)


def test_analytic_and_monte_carlo_kl_agree_in_expectation():
    q = posterior()
    p = prior("standard-normal")()
    assert has_analytic_kl(q, p)
    analytic = kl_term(q, p)
    torch.manual_seed(0)
    z = q.sample((20000,))
    samples = q.log_prob(z) - p.log_prob(z)  # [N, B]
    monte_carlo = samples.mean(0)
    standard_error = samples.std(0) / math.sqrt(len(samples))
    assert analytic.shape == (6,)
    assert ((monte_carlo - analytic).abs() < 5 * standard_error).all(), (monte_carlo, analytic)


def test_kl_matches_the_closed_form():
    q = posterior()
    closed = -0.5 * (1 + 2 * q.base_dist.scale.log() - q.mean.pow(2) - q.base_dist.scale.pow(2)).sum(1)
    assert torch.allclose(kl_term(q, prior("standard-normal")()), closed, atol=1e-5)


def test_mixture_prior_takes_the_monte_carlo_path():
    torch.manual_seed(0)
    q = posterior()
    p = prior("mixture-of-gaussians", components=4)()
    assert not has_analytic_kl(q, p)
    z = q.rsample()
    assert torch.allclose(kl_term(q, p, z), q.log_prob(z) - p.log_prob(z))
    # Without z it draws one itself; the estimate is finite and has the batch shape.
    estimate = kl_term(q, p)
    assert estimate.shape == (6,) and torch.isfinite(estimate).all()


def test_monte_carlo_kl_of_a_mixture_is_unbiased_for_a_single_component():
    # A one-component mixture is a Gaussian, whose KL torch knows: the MC path must agree with it.
    q = posterior()
    mixture = prior("mixture-of-gaussians", components=1)
    gaussian = Independent(Normal(mixture.means[0].detach(), mixture.log_scales[0].detach().exp()), 1)
    torch.manual_seed(0)
    z = q.sample((20000,))
    with torch.no_grad():
        samples = kl_term(q, mixture(), z)  # [N, B]
    monte_carlo, standard_error = samples.mean(0), samples.std(0) / math.sqrt(len(samples))
    analytic = kl_term(q, gaussian)
    assert ((monte_carlo - analytic).abs() < 5 * standard_error).all()


def test_mixture_model_elbo_uses_the_sampled_z():
    # With a Monte-Carlo KL, the one-sample ELBO and the K=1 importance-weighted bound are the
    # same quantity: log p(x|z) + log p(z) - log q(z|x) at the same z.
    model = zoo.create("vae-conv-mog-mnist")
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(3)
    elbo = model.elbo(x).elbo
    torch.manual_seed(3)
    iwae = model.iwae(x, samples=1)
    assert torch.allclose(elbo, iwae, rtol=1e-5, atol=1e-3)


# -- the importance-weighted bound ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    model = zoo.compose("conv-mnist", "conv-mnist", latent_size=4)
    # A few sharper posteriors than at initialisation, so the bounds differ visibly.
    with torch.no_grad():
        model.encoder.net[-1].weight.mul_(20)
    return model


def test_iwae_with_one_sample_equals_the_elbo_in_expectation(small_model):
    x = torch.rand(4, 1, 28, 28).repeat(250, 1, 1, 1)  # 250 draws for each of 4 images
    torch.manual_seed(0)
    with torch.no_grad():
        elbo = small_model.elbo(x).elbo.view(250, 4)
        iwae = small_model.iwae(x, samples=1).view(250, 4)
    difference = (iwae.mean(0) - elbo.mean(0)).abs()
    standard_error = ((iwae.var(0) + elbo.var(0)) / 250).sqrt()
    assert (difference < 5 * standard_error).all(), (difference, standard_error)


def test_iwae_increases_with_k(small_model):
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(0)
    with torch.no_grad():
        bounds = [torch.stack([small_model.iwae(x, samples=k) for _ in range(4)]).mean() for k in (1, 5, 50)]
    assert bounds[0] < bounds[1] < bounds[2], bounds


def test_chunked_iwae_agrees_with_unchunked(small_model):
    # Each chunk draws its own latents (memory stays bounded in K), so the two estimates agree
    # statistically, not bit for bit: at K=400 both sit within a fraction of a nat of log p(x).
    x = torch.rand(3, 1, 28, 28)
    torch.manual_seed(7)
    whole = small_model.iwae(x, samples=400)
    torch.manual_seed(8)
    chunked = small_model.iwae(x, samples=400, chunk_size=3)
    assert torch.allclose(whole, chunked, atol=0.5)
    chunks = list(small_model.iw_log_weights(x, samples=20, chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 3, 3, 3, 3, 2]


def test_iwae_rejects_no_samples(small_model):
    for bad in (0, -3, 1.5, True, "5"):
        with pytest.raises(zoo.ZooError, match="samples must be a positive integer"):
            small_model.iwae(torch.rand(2, 1, 28, 28), samples=bad)


def test_log_mean_exp_is_stable():
    big = torch.tensor([[1000.0, 1000.0], [-1000.0, 1000.0]])
    out = log_mean_exp(big, dim=0)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.tensor([1000.0 - math.log(2), 1000.0]))
    tiny = torch.full((5,), -5000.0)
    assert log_mean_exp(tiny).item() == pytest.approx(-5000.0)
    values = torch.randn(7, 3)
    assert torch.allclose(log_mean_exp(values), values.exp().mean(0).log(), atol=1e-6)


def test_iwae_combines_chunks_stably(small_model, monkeypatch):
    # Log weights far beyond exp's range: the chunked combination must still be exact.
    weights = [torch.full((2, 3), -3000.0), torch.full((2, 3), -2990.0), torch.full((1, 3), -3000.0)]
    monkeypatch.setattr(type(small_model), "iw_log_weights", lambda self, x, samples, chunk_size=None: iter(weights))
    out = small_model.iwae(torch.rand(3, 1, 28, 28), samples=5, chunk_size=2)
    expected = log_mean_exp(torch.cat(weights), dim=0)
    assert torch.isfinite(out).all() and torch.allclose(out, expected)


def test_the_model_the_objectives_and_the_evaluator_weigh_draws_with_one_function(small_model):
    """log w = log p(x|z) + log p(z) - log q(z|x) is written once (zoo.estimators.iw_log_weights): from
    the same draws the IWAE objective's loss, the model's bound and the evaluator's estimate agree."""
    from zoo.estimators import iw_batch, iw_log_weights
    from zoo.objectives import IWAE

    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        q, prior = small_model.encoder(x), small_model.prior()
        z = q.rsample((3,))
        w = iw_log_weights(small_model, x, q, z)
        log_px_z = small_model.likelihood(small_model.decoder(z)).log_prob(x.expand(3, *x.shape))
        assert torch.equal(w.log_w, log_px_z + prior.log_prob(z) - q.log_prob(z))
        assert torch.equal(w.log_ratio, q.log_prob(z) - prior.log_prob(z))
        torch.manual_seed(4)
        loss = IWAE(samples=7)(small_model, x).loss
        torch.manual_seed(4)
        bound = small_model.iwae(x, samples=7)
    torch.manual_seed(4)
    log_px = iw_batch(small_model, x, 7, decode_batch=7 * len(x))[0]
    assert torch.equal(loss, -bound.mean())
    assert torch.allclose(log_px, bound.double(), rtol=0, atol=1e-4)


# -- beta -------------------------------------------------------------------------------------


def test_beta_weights_the_kl_in_the_elbo_objective():
    from zoo.objectives import ELBO

    x = torch.rand(5, 1, 28, 28)
    model = zoo.compose("conv-mnist", "conv-mnist", latent_size=4)
    torch.manual_seed(3)
    terms = model(x)
    torch.manual_seed(3)
    loss, logs = ELBO(beta=4.0)(model, x)
    assert torch.allclose(loss, -(terms.recon - 4.0 * terms.kl).mean())
    # The ELBO itself is reported unweighted, and the logs carry its two terms.
    assert torch.allclose(terms.elbo, terms.recon - terms.kl)
    assert torch.allclose(logs["recon"], -terms.recon.mean()) and torch.allclose(logs["kl"], terms.kl.mean())
    assert zoo.create("vae-conv-mnist", beta=0.5).spec["recipe"]["objective_options"] == {"beta": 0.5}
