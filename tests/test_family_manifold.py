"""The manifold plugin: the von Mises-Fisher and the wrapped normal are proper densities (they
integrate to 1), sample what they should and have the KL and gradients the papers use; bad
options are one-line errors; the conformance kit passes; the recipes train from the command line
on MNIST and on colour images."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch
from PIL import Image
from test_reliability import cli  # in-process ``zoo ARGS`` -> (exit code, output)
from torch.distributions import kl_divergence

import zoo
from zoo.conformance import parametrize_plugin_checks
from zoo_manifold.poincare import WrappedNormal, conformal_factor, distance, expmap, expmap0, logmap, logmap0
from zoo_manifold.vmf import HypersphericalUniform, VonMisesFisher, bessel_ratio, log_bessel_iv

F64 = torch.float64


SMALL = {
    "encoder:svae-conv": {"channels": 4},
    "encoder:pvae-conv": {"channels": 4},
    "decoder:pvae-conv": {"channels": 4},
    "recipe:svae-mnist": {"encoder.channels": 4},
    "recipe:pvae-mnist": {"encoder.channels": 4, "decoder.channels": 4},
}


@parametrize_plugin_checks("manifold", options=SMALL)
def test_manifold_conforms(check):
    check()


# -- von Mises-Fisher ----------------------------------------------------------------------------


def _unit(*values) -> torch.Tensor:
    v = torch.tensor(values, dtype=F64)
    return v / v.norm()


@pytest.mark.parametrize("kappa", [0.5, 5.0, 50.0])
def test_vmf_integrates_to_one_on_the_two_sphere(kappa):
    """Quadrature over S^2 in spherical coordinates (midpoint rule, fine enough for kappa = 50)."""
    theta = (torch.arange(1500, dtype=F64) + 0.5) * math.pi / 1500
    phi = (torch.arange(1000, dtype=F64) + 0.5) * 2 * math.pi / 1000
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    z = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], dim=-1)
    q = VonMisesFisher(_unit(0.3, -0.5, 0.8), torch.tensor(kappa, dtype=F64))
    area = t.sin() * (math.pi / 1500) * (2 * math.pi / 1000)
    assert (q.log_prob(z).exp() * area).sum().item() == pytest.approx(1.0, abs=1e-4)


def test_vmf_density_and_entropy_match_scipy_in_ten_dimensions():
    mu = _unit(*range(1, 11))
    for kappa in (0.7, 8.0, 300.0):
        q = VonMisesFisher(mu, torch.tensor(kappa, dtype=F64))
        reference = scipy.stats.vonmises_fisher(mu.numpy(), kappa)
        z = reference.rvs(5, random_state=0)
        assert q.log_prob(torch.from_numpy(z)).numpy() == pytest.approx(reference.logpdf(z), rel=1e-8)
        assert q.entropy().item() == pytest.approx(reference.entropy(), rel=1e-8)


@pytest.mark.parametrize(("m", "kappa"), [(3, 1.0), (3, 20.0), (10, 5.0), (10, 200.0)])
def test_vmf_samples_lie_on_the_sphere_with_mean_resultant_length_a_d(m, kappa):
    torch.manual_seed(0)
    mu = torch.nn.functional.normalize(torch.randn(m, dtype=F64), dim=0)
    q = VonMisesFisher(mu, torch.tensor(kappa, dtype=F64))
    z = q.sample((40000,))
    assert torch.allclose(z.norm(dim=-1), torch.ones(40000, dtype=F64), atol=1e-10)
    expected = scipy.special.iv(m / 2, kappa) / scipy.special.iv(m / 2 - 1, kappa)  # A_m(kappa)
    assert q.mean_resultant_length.item() == pytest.approx(expected, rel=1e-10)
    spread = math.sqrt((1 - expected**2) / 40000)  # a bound on the standard error of the mean of mu^T z
    assert (z @ mu).mean().item() == pytest.approx(expected, abs=5 * spread)
    assert torch.allclose(z.mean(0), expected * mu, atol=0.03)  # the expectation in R^m is A_m(kappa) mu


@pytest.mark.parametrize(("m", "kappa"), [(3, 2.0), (10, 30.0)])
def test_kl_to_the_uniform_is_analytic_and_matches_monte_carlo(m, kappa):
    torch.manual_seed(1)
    q = VonMisesFisher(torch.nn.functional.normalize(torch.randn(m, dtype=F64), dim=0), torch.tensor(kappa, dtype=F64))
    p = HypersphericalUniform(m, torch.zeros((), dtype=F64))
    z = q.sample((40000,))
    estimate = q.log_prob(z) - p.log_prob(z)
    assert kl_divergence(q, p).item() == pytest.approx(estimate.mean().item(), abs=4 * estimate.std().item() / 200)
    assert kl_divergence(q, p).item() > 0


def test_the_uniform_on_the_sphere():
    p = HypersphericalUniform(3, torch.zeros((), dtype=F64))
    z = p.sample((1000,))
    assert torch.allclose(z.norm(dim=-1), torch.ones(1000, dtype=F64))
    assert torch.allclose(p.log_prob(z), torch.full((1000,), -math.log(4 * math.pi), dtype=F64))
    assert abs(z.mean(0)).max() < 0.1


def test_log_bessel_and_its_gradient():
    kappa = torch.tensor([0.01, 0.5, 3.0, 80.0, 2000.0], dtype=F64, requires_grad=True)
    for order in (0.5, 4.0, 31.0):
        exact = np.log(scipy.special.ive(order, kappa.detach().numpy())) + kappa.detach().numpy()
        assert log_bessel_iv(order, kappa).detach().numpy() == pytest.approx(exact, rel=1e-10)
        assert torch.autograd.gradcheck(lambda k, order=order: log_bessel_iv(order, k), (kappa,))
        assert torch.autograd.gradcheck(lambda k, order=order: bessel_ratio(order, k), (kappa,))
    tiny = log_bessel_iv(60.0, torch.tensor([1e-3], dtype=F64))  # ive underflows: the series' first term
    assert torch.isfinite(tiny).all() and tiny.item() == pytest.approx(60 * math.log(5e-4) - math.lgamma(61), rel=1e-6)


def test_vmf_reparameterised_gradient_follows_the_concentration():
    """d/dkappa E[mu^T z] by the reparameterised draws against dA/dkappa. The rejection sampler's
    correction term is left out (as in Davidson et al.'s implementation), so the two agree within
    a few per cent at moderate kappa, not exactly."""
    torch.manual_seed(2)
    mu = _unit(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    kappa = torch.tensor(20.0, dtype=F64, requires_grad=True)
    (VonMisesFisher(mu, kappa).rsample((100000,)) @ mu).mean().backward()
    h = 1e-5
    slope = (
        bessel_ratio(4.0, torch.tensor(20 + h, dtype=F64)) - bessel_ratio(4.0, torch.tensor(20 - h, dtype=F64))
    ) / (2 * h)
    assert kappa.grad.item() == pytest.approx(slope.item(), rel=0.1)
    loc = torch.nn.functional.normalize(torch.randn(4, 10, dtype=F64), dim=-1).requires_grad_()
    VonMisesFisher(loc, torch.full((4,), 5.0, dtype=F64)).rsample()[:, 0].sum().backward()
    assert torch.isfinite(loc.grad).all() and loc.grad.abs().sum() > 0


# -- the Poincare ball ---------------------------------------------------------------------------


@pytest.mark.parametrize(("c", "loc", "scale"), [(1.0, (0.0, 0.0), (0.6, 0.6)), (0.7, (0.5, -0.3), (0.3, 0.5))])
def test_wrapped_normal_integrates_to_one_on_the_two_dimensional_ball(c, loc, scale):
    """Against the ball's volume element lambda_x^2 dx, on a grid over the disc of radius 1/sqrt(c)."""
    radius, n = 1 / math.sqrt(c), 1600
    side = (torch.arange(n, dtype=F64) + 0.5) / n * 2 * radius - radius
    x, y = torch.meshgrid(side, side, indexing="ij")
    z = torch.stack([x, y], dim=-1).reshape(-1, 2)
    inside = z.norm(dim=-1) < radius * (1 - 1e-9)
    z = z[inside]
    q = WrappedNormal(torch.tensor(loc, dtype=F64), torch.tensor(scale, dtype=F64), c)
    volume = conformal_factor(z, c).squeeze(-1) ** 2 * (2 * radius / n) ** 2
    assert (q.log_prob(z).exp() * volume).sum().item() == pytest.approx(1.0, abs=2e-3)


def test_wrapped_normal_samples_stay_inside_the_ball_and_are_distributed_as_built():
    torch.manual_seed(3)
    c = 0.7
    loc = expmap0(torch.tensor([2.5, -1.0, 0.5], dtype=F64), c)  # near the boundary
    q = WrappedNormal(loc, torch.tensor(3.0, dtype=F64), c)
    z = q.sample((20000,))
    assert (z.norm(dim=-1) < 1 / math.sqrt(c)).all() and torch.isfinite(q.log_prob(z)).all()
    # the geodesic distance to loc is the norm of the tangent Gaussian draw: chi with 3 degrees of freedom x scale
    small = WrappedNormal(loc, torch.tensor(0.4, dtype=F64), c)
    r = distance(loc, small.sample((20000,)), c)
    assert r.mean().item() == pytest.approx(0.4 * scipy.stats.chi(3).mean(), rel=0.02)


def test_float32_posteriors_near_the_boundary_keep_a_positive_kl():
    """A float32 wrapped normal near the boundary is scored in float64: the Monte-Carlo KL to the
    prior stays positive, with nothing for an optimiser to exploit."""
    torch.manual_seed(6)
    c = 0.7
    tangent = torch.nn.functional.normalize(torch.randn(256, 10), dim=-1) * 8.0  # exp_0 puts these at the edge
    q = WrappedNormal(expmap0(tangent, c), 0.05 + 0.5 * torch.rand(256, 10), c)
    p = WrappedNormal(torch.zeros(10), torch.ones(10), c)
    z = q.rsample()
    assert z.dtype == torch.float32 and q.log_prob(z).dtype == torch.float32
    kl = q.log_prob(z) - p.log_prob(z)
    assert torch.isfinite(kl).all() and (kl > 0).all()


def test_poincare_maps_are_inverse_and_geodesic():
    torch.manual_seed(4)
    c = 1.3
    x = expmap0(0.5 * torch.randn(5, 4, dtype=F64), c)
    u = 0.3 * torch.randn(5, 4, dtype=F64)  # steps that stay clear of the boundary (no projection)
    y = expmap(x, u, c)
    assert torch.allclose(logmap(x, y, c), u, atol=1e-9)
    assert torch.allclose(logmap0(expmap0(u, c), c), u, atol=1e-9)
    assert torch.allclose(distance(x, y, c), conformal_factor(x, c).squeeze(-1) * u.norm(dim=-1), atol=1e-9)


# -- components and mistakes ---------------------------------------------------------------------


def test_encoders_give_the_papers_heads():
    torch.manual_seed(5)
    model = zoo.create("svae-mnist", **{"encoder.channels": 4, "decoder.channels": 4})
    q = model.encoder(torch.rand(6, 1, 28, 28))
    assert isinstance(q, VonMisesFisher) and (q.concentration >= 1).all()
    assert torch.allclose(q.loc.norm(dim=-1), torch.ones(6))
    assert isinstance(model.prior(), HypersphericalUniform)
    model = zoo.create("pvae-mnist", **{"encoder.channels": 4, "decoder.channels": 4})
    q = model.encoder(torch.rand(6, 1, 28, 28))
    assert isinstance(q, WrappedNormal) and q.c == pytest.approx(0.7) and model.decoder.curvature == pytest.approx(0.7)
    assert (q.loc.norm(dim=-1) < 1 / math.sqrt(0.7)).all()
    with torch.no_grad():
        model.encoder.net[-1].bias[10:].fill_(50.0)  # a posterior that would be far wider than the prior
    assert model.encoder(torch.rand(6, 1, 28, 28)).scale.max() <= 1.0  # is held at the prior's scale
    terms = model.elbo(torch.rand(6, 1, 28, 28).bernoulli())
    assert torch.isfinite(terms.elbo).all()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: zoo.create("svae-mnist", latent_size=1), "latent_size >= 2"),
        (lambda: zoo.create("pvae-mnist", **{"prior.c": 0.0}), "curvature c must be a positive number"),
        (lambda: zoo.create("pvae-mnist", **{"prior.c": -1.0}), "curvature c must be a positive number"),
        (lambda: zoo.create("pvae-mnist", **{"prior.scale": 0.0}), "scale must be a positive number"),
        (lambda: zoo.compose("pvae-conv", "conv", "standard-normal", latent_size=4), "wrapped-normal"),
        (lambda: zoo.compose("svae-conv", "conv", "standard-normal", latent_size=4), "uniform-sphere"),
        (lambda: VonMisesFisher(torch.ones(3, 1), torch.ones(3)), "m >= 2"),
    ],
)
def test_bad_settings_are_one_line_errors(build, message):
    with pytest.raises(zoo.ZooError) as info:
        build()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_curvature_on_the_command_line_is_one_line(capsys, tmp_path):
    code, out = cli(capsys, "train", "pvae-mnist", "--set", "prior.c=-0.5", "--out", tmp_path / "r")
    assert code != 0 and "curvature c must be a positive number" in out and "Traceback" not in out, out
    assert not (tmp_path / "r").exists()


# -- from the command line ---------------------------------------------------------------------


SMALL_NETS = ["--set", "encoder.channels=4", "--set", "decoder.channels=4", "--no-progress", "--device", "cpu"]


@pytest.mark.parametrize("recipe", ["svae-mnist", "pvae-mnist"])
def test_recipes_train_on_mnist(recipe, data_root, capsys, tmp_path):
    run = tmp_path / "run"
    code, out = cli(capsys, "train", recipe, "--data-dir", data_root, "--max-steps", "3", *SMALL_NETS, "--out", run)
    assert code == 0, out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert np.isfinite(rows[-1]["test_loss"]) and rows[-1]["test_kl"] >= 0
    code, out = cli(
        capsys, "eval", str(run), "--iw-samples", "3", "--limit", "20", "--no-fid", "--out", str(tmp_path / "eval")
    )
    assert code == 0, out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_images"] == 20 and np.isfinite(metrics["test_recon"])
    assert np.isfinite(metrics["test_nll_iw"]) and metrics["test_nll_iw"] <= metrics["test_neg_elbo"] + 1.0


@pytest.mark.parametrize("recipe", ["svae-mnist", "pvae-mnist"])
def test_recipes_train_on_a_colour_folder(recipe, capsys, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    run = tmp_path / "run"
    args = ["--data", folder, "--max-steps", "2", "--set", "batch_size=8", *SMALL_NETS, "--out", run]
    code, out = cli(capsys, "train", recipe, *args)
    assert code == 0, out
    assert Image.open(run / "samples" / "epoch-001.png").mode == "RGB"
