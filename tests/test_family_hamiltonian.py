"""The hamiltonian plugin: HVAE (Caterini et al. 2018) and RHVAE (Chadebec et al. 2020).

Leapfrog preserves volume and is reversible, the tempering schedule runs from beta_0 to 1, the
HVAE bound tends to the ELBO as the step size vanishes at beta_0 = 1, the RHVAE metric's closed-form
gradient matches autograd, the step size is trained by the model's optimizer, eval mode and bad
input, the conformance kit, and the CLI on MNIST and on a folder of colour pictures."""

from __future__ import annotations

import math

import pytest
import torch
from helpers_cli import run_zoo
from helpers_user_data import cache  # noqa: F401 - the fixture
from helpers_user_data import folder as picture_folder
from torch.autograd.functional import jacobian

import zoo
from zoo.conformance import parametrize_plugin_checks
from zoo.objectives import TrainingStep
from zoo.updates import Updates
from zoo_hamiltonian.objectives import HVAE, RHVAE, Metric, leapfrog, tempering

SMALL = {"encoder:rhvae-conv": {"channels": 4}, "recipe:rhvae-conv-mnist": {"encoder.channels": 4}}


@parametrize_plugin_checks("hamiltonian", options=SMALL)
def test_hamiltonian_plugin_conforms(check):
    check()


def banana(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A non-Gaussian log-density and its gradient, for the integrator alone."""
    with torch.enable_grad():
        z = z if z.requires_grad else z.detach().requires_grad_()
        value = -0.5 * z[..., 0] ** 2 - 0.5 * (z[..., 1] - z[..., 0] ** 2) ** 2 - 0.1 * z.pow(4).sum(-1)
        (grad,) = torch.autograd.grad(value.sum(), z, create_graph=True)
    return value, grad


def flow(state: torch.Tensor, step: float = 0.3, n: int = 3) -> torch.Tensor:
    z, rho = state[:2].view(1, 2), state[2:].view(1, 2)
    step = torch.tensor(step, dtype=state.dtype)
    grad = banana(z)[1]
    for _ in range(n):
        z, rho, _, grad = leapfrog(z, rho, grad, step, banana)
    return torch.cat([z.view(2), rho.view(2)])


def test_leapfrog_preserves_volume():
    for seed in range(3):
        state = torch.randn(4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        assert abs(torch.linalg.det(jacobian(flow, state)).item() - 1) < 1e-10


def test_leapfrog_is_reversible():
    state = torch.tensor([0.3, -1.2, 0.8, 0.5], dtype=torch.float64)
    end = flow(state)
    back = flow(torch.cat([end[:2], -end[2:]]))
    assert torch.allclose(torch.cat([back[:2], -back[2:]]), state, atol=1e-12)


def test_tempering_runs_from_beta0_to_one():
    sqrt_beta0 = torch.tensor(math.sqrt(0.3))
    assert torch.isclose(tempering(0, 4, sqrt_beta0), sqrt_beta0)
    assert torch.isclose(tempering(4, 4, sqrt_beta0), torch.tensor(1.0))
    values = [tempering(k, 4, sqrt_beta0).item() for k in range(5)]
    assert values == sorted(values)


def model(encoder: str = "conv-mnist") -> zoo.VAE:
    torch.manual_seed(0)
    return zoo.compose(encoder, "conv-mnist", latent_size=3, data_shape=(1, 8, 8)).double()


def batch() -> torch.Tensor:
    return (torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.5).double()


def test_hvae_bound_tends_to_the_elbo_at_beta0_one_and_a_vanishing_step():
    vae, x = model(), batch()
    objective = HVAE(steps=2, step_size=1e-7, beta0=1.0).double()
    torch.manual_seed(5)
    loss = objective(vae, x).loss
    torch.manual_seed(5)
    q = vae.encoder(x)
    z0 = q.rsample()
    elbo = vae.likelihood(vae.decoder(z0)).log_prob(x) + vae.prior().log_prob(z0) - q.log_prob(z0)
    assert torch.allclose(loss, -elbo.mean(), atol=1e-5)


@pytest.mark.parametrize("objective", [HVAE(), RHVAE()], ids=["hvae", "rhvae"])
def test_eval_mode_under_no_grad_gives_a_detached_finite_loss(objective):
    vae, x = model("rhvae-conv" if isinstance(objective, RHVAE) else "conv-mnist"), batch()
    objective = objective.double().eval()
    with torch.no_grad():
        out = objective(vae, x)
    assert torch.isfinite(out.loss) and not out.loss.requires_grad
    assert set(out.logs) == {"bound", "recon", "step_size", "beta0"}


def test_rhvae_metric_gradient_matches_autograd():
    g = torch.Generator().manual_seed(0)
    factors = torch.randn(6, 4, 4, generator=g, dtype=torch.float64).tril()
    metric = Metric(torch.randn(6, 4, generator=g, dtype=torch.float64), factors @ factors.mT, 1.5, 0.01)
    z = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    rho = torch.randn(3, 4, generator=g, dtype=torch.float64)
    g_inv = metric.inverse(z)
    value = -0.5 * torch.logdet(g_inv) + 0.5 * (rho.unsqueeze(-2) @ g_inv @ rho.unsqueeze(-1)).flatten()
    (expected,) = torch.autograd.grad(value.sum(), z)
    assert torch.allclose(metric.gradient(z, rho), expected, atol=1e-10)


def test_rhvae_gives_every_parameter_a_finite_gradient():
    vae, x = model("rhvae-conv"), batch()
    out = RHVAE(steps=2, step_size=0.05, temperature=0.7).double()(vae, x)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in vae.parameters())


def test_rhvae_with_a_flat_metric_is_the_hvae():
    """With G = I everywhere (regularization 1 and metric factors of zero) the generalised leapfrog
    is the plain one, so both bounds agree with the same random numbers."""

    class Flat(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            q = self.encoder(x)
            q.metric_factors = torch.zeros(x.shape[0], 3, 3, dtype=x.dtype)
            return q

    vae, x = model(), batch()
    flat = zoo.VAE.__new__(zoo.VAE)
    torch.nn.Module.__init__(flat)
    flat.encoder, flat.decoder, flat.prior, flat.likelihood = Flat(vae.encoder), vae.decoder, vae.prior, vae.likelihood
    torch.manual_seed(1)
    riemann = RHVAE(steps=3, step_size=0.05, regularization=1.0).double()(flat, x).loss
    torch.manual_seed(1)
    plain = HVAE(steps=3, step_size=0.05).double()(vae, x).loss
    assert torch.allclose(riemann, plain, atol=1e-8)


def test_the_step_size_is_trained_by_the_model_optimizer():
    objective = HVAE(learn_step_size=True, learn_beta0=True)
    vae = model().float()
    params = {id(p) for p in Updates(objective, TrainingStep(vae, objective), 1e-3).model_params}
    assert id(objective.log_step_size) in params and id(objective.raw_sqrt_beta0) in params
    fixed = HVAE(learn_step_size=False)
    assert "log_step_size" in dict(fixed.named_buffers())  # not learned: a buffer, still in the checkpoint


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: HVAE(steps=0), "steps must be an integer >= 1"),
        (lambda: HVAE(step_size=0.0), "step_size must be a number > 0"),
        (lambda: HVAE(beta0=1.5), "beta0 must be a number in (0, 1]"),
        (lambda: RHVAE(temperature=-1.0), "temperature must be a number > 0"),
        (lambda: RHVAE(fixed_point=0), "fixed_point must be an integer >= 1"),
    ],
)
def test_bad_options_are_one_line_errors(make, message):
    with pytest.raises(zoo.ZooError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_metric_factors_are_a_one_line_error():
    vae, x = model(), batch()

    class Wrong(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            q = self.encoder(x)
            q.metric_factors = torch.zeros(x.shape[0], 2, dtype=x.dtype)
            return q

    vae.encoder = Wrong(vae.encoder)
    with pytest.raises(zoo.ZooError, match=r"metric_factors must be a tensor \[5, 3, 3\]"):
        RHVAE().double()(vae, x)


def test_cli_trains_and_evaluates_hvae_on_mnist(data_root, tmp_path, capsys):
    run = tmp_path / "hvae"
    code, out, err = run_zoo(
        capsys, "train", "hvae-conv-mnist", "--data-dir", data_root, "--out", run, "--max-steps", "2",
        "--device", "cpu",
    )  # fmt: skip
    assert code == 0, out + err
    code, out, err = run_zoo(capsys, "eval", run, "--limit", "20", "--iw-samples", "5", "--no-fid", "--json")
    assert code == 0, out + err
    assert "test_nll_iw" in out


def test_cli_trains_rhvae_on_a_colour_folder(tmp_path, capsys, cache):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    picture_folder(pictures, 24, size=(20, 20))
    run = tmp_path / "rhvae"
    code, out, err = run_zoo(
        capsys, "train", "rhvae-conv-mnist", "--data", pictures, "--image-size", "16", "--out", run,
        "--max-steps", "2", "--device", "cpu", "--set", "batch_size=8",
    )  # fmt: skip
    assert code == 0, out + err
    assert (run / "checkpoints").exists()
