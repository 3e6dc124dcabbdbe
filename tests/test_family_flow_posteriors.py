"""The flows plugin's flow posteriors: IAF (Kingma et al. 2016) and planar flows (Rezende & Mohamed
2015). Log-determinants against autograd Jacobians, IAF's triangular Jacobian, the planar
invertibility constraint, the density of q(z|x) by the change of variables (including at points it
did not sample), the ELBO and IWAE through it, bad options, the conformance kit, and the CLI on
MNIST and on a folder of colour pictures."""

from __future__ import annotations

import pytest
import torch
from helpers_cli import run_zoo
from helpers_user_data import cache  # noqa: F401 - the fixture
from helpers_user_data import folder as picture_folder
from torch.autograd.functional import jacobian

import zoo
from zoo.conformance import parametrize_plugin_checks
from zoo_flows.posterior_flows import (
    MADE,
    IAFConvEncoder,
    IAFStep,
    PlanarConvEncoder,
    PlanarStep,
    constrained_u,
    flow_log_det,
)

SMALL = {
    "encoder:iaf-conv": {"hidden": 8, "context": 4, "channels": 4},
    "encoder:planar-conv": {"steps": 3, "channels": 4},
    "prior:realnvp": {"hidden": 16},
    "recipe:vae-iaf-conv-mnist": {"encoder.hidden": 8, "encoder.channels": 4},
    "recipe:vae-planar-conv-mnist": {"encoder.steps": 3, "encoder.channels": 4},
}


@parametrize_plugin_checks("flows", options=SMALL)
def test_flows_plugin_conforms(check):
    check()


def scrambled(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """``module`` in float64 with weights far from their near-identity start."""
    torch.manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, scale)
    return module


def iaf_step(latent: int = 4, reverse: bool = False) -> IAFStep:
    made = scrambled(MADE(latent, context=3, hidden=12, depth=2, reverse=reverse, forget_bias=0.0))
    return IAFStep(made, torch.randn(1, 3, dtype=torch.float64), cache_size=0)


def planar_step(latent: int = 4, seed: int = 0) -> PlanarStep:
    g = torch.Generator().manual_seed(seed)
    u, w = torch.randn(2, 1, latent, generator=g, dtype=torch.float64) * 2
    b = torch.randn(1, generator=g, dtype=torch.float64)
    return PlanarStep(constrained_u(u, w), w, b, cache_size=0)


@pytest.mark.parametrize("make", [iaf_step, planar_step], ids=["iaf", "planar"])
def test_log_det_matches_the_autograd_jacobian(make):
    step = make()
    for seed in range(3):
        x = torch.randn(1, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        full = jacobian(lambda v: step._call(v.view(1, 4)).view(4), x.view(4))
        expected = torch.linalg.slogdet(full).logabsdet
        assert torch.allclose(step.log_abs_det_jacobian(x, step._call(x)), expected.view(1), atol=1e-10)


@pytest.mark.parametrize("reverse", [False, True])
def test_iaf_jacobian_is_triangular_in_its_order(reverse):
    step = iaf_step(5, reverse=reverse)
    x = torch.randn(1, 5, dtype=torch.float64)
    full = jacobian(lambda v: step._call(v.view(1, 5)).view(5), x.view(5))
    strictly_above = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
    zero = strictly_above.T if reverse else strictly_above  # output i reads only the inputs before it
    assert torch.all(full[zero] == 0)
    assert torch.all(full[~zero].abs().sum() > 0)


@pytest.mark.parametrize("make", [iaf_step, planar_step], ids=["iaf", "planar"])
def test_inverse_undoes_the_step(make):
    step = make()
    x = torch.randn(7, 1, 4, dtype=torch.float64) * 2
    assert torch.allclose(step._inverse(step._call(x)), x, atol=1e-8)


def test_planar_constraint_keeps_every_step_invertible():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(1000, 6, generator=g)
    u = -5 * w + torch.randn(1000, 6, generator=g)  # w^T u far below -1 before the constraint
    assert ((w * u).sum(-1) < -1).all()
    u_hat = constrained_u(u, w)
    assert ((w * u_hat).sum(-1) > -1).all()
    moved = u_hat - u  # only along w
    assert torch.allclose(
        moved - (moved * w).sum(-1, keepdim=True) * w / (w * w).sum(-1, keepdim=True), 0 * u, atol=1e-5
    )


@pytest.mark.parametrize("encoder", ["iaf", "planar"])
def test_log_prob_is_the_change_of_variables(encoder):
    torch.manual_seed(0)
    if encoder == "iaf":
        enc = scrambled(IAFConvEncoder(3, (1, 8, 8), steps=3, hidden=8, context=4, channels=4), scale=0.3)
    else:
        enc = scrambled(PlanarConvEncoder(3, (1, 8, 8), steps=4, channels=4), scale=0.3)
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    q = enc(x)
    z0 = q.base_dist.rsample((6,))
    z = z0
    for t in q.transforms:
        z = t(z)
    expected = q.base_dist.log_prob(z0) - flow_log_det(q, z0)
    assert torch.allclose(q.log_prob(z), expected, atol=1e-8)  # the sample just drawn: from the cache
    assert torch.allclose(q.log_prob(z.detach().clone()), expected, atol=1e-6)  # any z: through the inverse
    assert q.rsample().requires_grad and q.mean.shape == (5, 3)


def test_planar_density_integrates_to_one():
    torch.manual_seed(0)
    enc = scrambled(PlanarConvEncoder(2, (1, 4, 4), steps=3, channels=2, downsamplings=1), scale=0.4)
    q = enc(torch.rand(1, 1, 4, 4, dtype=torch.float64))
    side = torch.linspace(-9, 9, 301, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(side, side, indexing="ij"), -1).view(-1, 1, 2)
    mass = q.log_prob(grid).exp().sum() * (side[1] - side[0]) ** 2
    assert abs(mass.item() - 1) < 1e-3


@pytest.mark.parametrize("encoder", ["iaf-conv", "planar-conv"])
def test_elbo_and_iwae_run_through_the_flow(encoder):
    torch.manual_seed(0)
    model = zoo.compose(encoder, "conv-mnist", latent_size=4, data_shape=(1, 12, 12))
    x = (torch.rand(6, 1, 12, 12) < 0.5).float()
    terms = model.elbo(x)
    assert torch.isfinite(terms.elbo).all() and terms.elbo.shape == (6,)
    bound = model.iwae(x, samples=7)
    assert torch.isfinite(bound).all() and bound.shape == (6,)
    (-terms.elbo.mean()).backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


@pytest.mark.parametrize(
    ("encoder", "options", "message"),
    [
        ("iaf-conv", {"steps": 0}, "steps must be an integer >= 1"),
        ("iaf-conv", {"hidden": 2.5}, "hidden"),
        ("planar-conv", {"steps": -1}, "steps must be an integer >= 1"),
        ("planar-conv", {"downsamplings": 4}, "at least 16x16 pixels"),
    ],
)
def test_bad_options_are_one_line_errors(encoder, options, message):
    with pytest.raises(zoo.ZooError) as err:
        zoo.compose(encoder, "conv-mnist", latent_size=4, data_shape=(1, 12, 12), encoder_options=options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_trains_and_evaluates_on_mnist(data_root, tmp_path, capsys):
    run = tmp_path / "iaf"
    code, out, err = run_zoo(
        capsys, "train", "vae-iaf-conv-mnist", "--data-dir", data_root, "--out", run, "--max-steps", "2",
        "--device", "cpu", "--set", "encoder.hidden=16",
    )  # fmt: skip
    assert code == 0, out + err
    code, out, err = run_zoo(capsys, "eval", run, "--limit", "20", "--iw-samples", "5", "--no-fid", "--json")
    assert code == 0, out + err
    assert "nll" in out.lower()


def test_cli_trains_on_a_colour_folder(tmp_path, capsys, cache):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    picture_folder(pictures, 24, size=(20, 20))
    run = tmp_path / "planar"
    code, out, err = run_zoo(
        capsys, "train", "vae-planar-conv-mnist", "--data", pictures, "--image-size", "16", "--out", run,
        "--max-steps", "2", "--device", "cpu", "--set", "batch_size=8", "--set", "encoder.steps=2",
    )  # fmt: skip
    assert code == 0, out + err
    assert (run / "checkpoints").exists()
