"""The mmd plugin: the MMD estimate is unbiased, ~0 for one distribution and grows with a shift;
WAE-MMD and InfoVAE-MMD compute what the papers write; bad options are one-line errors; the
conformance kit passes; the recipes train from the command line on MNIST and on colour images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_reliability import cli  # in-process ``zoo ARGS`` -> (exit code, output)

import zoo
from zoo.conformance import parametrize_plugin_checks
from zoo_mmd.mmd import DEFAULT_SCALES, kernel_matrix, mmd

SMALL = {"encoder:wae-conv": {"channels": 4}, "recipe:wae-mmd-conv-mnist": {"encoder.channels": 4}}


@parametrize_plugin_checks("mmd", options=SMALL)
def test_mmd_conforms(check):
    check()


# -- the estimate ------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_mmd_is_about_zero_for_one_distribution_and_grows_with_a_shift(kernel):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    same = mmd(a, b, kernel)
    shifted = [mmd(a, b + shift, kernel) for shift in (0.25, 0.5, 1.0, 2.0)]
    assert abs(same) < 0.01
    assert all(later > earlier for earlier, later in zip([same, *shifted], shifted))
    assert shifted[0] > 5 * abs(same)


def test_mmd_is_unbiased():
    """The U-statistic's mean over many pairs of samples of one distribution is 0 (a V-statistic,
    with the diagonal kept, would be positive by about k(0)/N twice)."""
    g = torch.Generator().manual_seed(1)
    estimates = torch.stack(
        [mmd(torch.randn(16, 4, generator=g), torch.randn(16, 4, generator=g)) for _ in range(2000)]
    )
    assert abs(estimates.mean()) < 3 * estimates.std() / 2000**0.5
    biased = 2 * len(DEFAULT_SCALES) / 16  # the diagonal's contribution a V-statistic would add
    assert abs(estimates.mean()) < biased / 20


def test_kernels_are_the_papers():
    x, y = torch.zeros(1, 2), torch.tensor([[2.0, 0.0]])  # ||x - y||^2 = 4, L = 2: C = 2 L sigma^2 = 4
    assert kernel_matrix(x, y, "imq", 1.0, [1.0]).item() == pytest.approx(4 / (4 + 4))
    assert kernel_matrix(x, y, "imq", 1.0, [0.5, 2.0]).item() == pytest.approx(2 / (2 + 4) + 8 / (8 + 4))
    assert kernel_matrix(x, y, "rbf", 1.0, [1.0]).item() == pytest.approx(np.exp(-1.0))
    assert kernel_matrix(x, y, "imq", 2.0, [1.0]).item() == pytest.approx(16 / (16 + 4))  # sigma = 2: C = 16


# -- the objectives ----------------------------------------------------------------------------


def _model(encoder: str):
    torch.manual_seed(0)
    return zoo.compose(
        encoder,
        "conv",
        "standard-normal",
        "bernoulli",
        latent_size=4,
        data_shape=(1, 8, 8),
        encoder_options={"channels": 4},
        decoder_options={"channels": 4},
    )


def test_wae_mmd_is_reconstruction_plus_lambda_mmd_on_a_deterministic_encoder():
    model = _model("wae-conv")
    assert model.encoder.deterministic
    objective, _ = zoo.build_objective("wae-mmd", {"reg_weight": 7.0, "kernel_choice": "rbf"})
    assert objective.needs_density is False
    x = torch.rand(16, 1, 8, 8).bernoulli()
    torch.manual_seed(3)
    loss, logs = objective(model, x)
    q = model.encoder(x)
    assert isinstance(q, zoo.PointMass)
    with pytest.raises(zoo.ZooError):
        q.log_prob(q.mean)
    torch.manual_seed(3)
    z_prior = torch.randn(16, 4)
    recon = model.likelihood(model.decoder(q.mean)).log_prob(x)
    expected = -recon.mean() + 7.0 * mmd(q.mean, z_prior, "rbf")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert logs["mmd"].item() == pytest.approx(mmd(q.mean, z_prior, "rbf").item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())


def test_info_vae_weights_kl_and_mmd_as_the_paper():
    model = _model("conv")
    x = torch.rand(16, 1, 8, 8).bernoulli()
    parts = {}
    for alpha, lam in ((0.0, 1.0), (0.0, 1000.0), (1.0, 10.0), (0.5, 2.0)):
        objective, _ = zoo.build_objective("info-vae-mmd", {"alpha": alpha, "lbd": lam})
        torch.manual_seed(5)
        loss, logs = objective(model, x)
        parts[alpha, lam] = loss.item(), logs
        expected = logs["recon"] + (1 - alpha) * logs["kl"] + (alpha + lam - 1) * logs["mmd"]
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # alpha 0, lambda 1 is the negative ELBO (analytic KL), whatever the MMD
    torch.manual_seed(5)
    q = model.encoder(x)
    z = q.rsample()
    elbo = model.likelihood(model.decoder(z)).log_prob(x) - torch.distributions.kl_divergence(q, model.prior())
    assert parts[0.0, 1.0][0] == pytest.approx(-elbo.mean().item(), rel=1e-5)


@pytest.mark.parametrize(
    ("objective", "options", "message"),
    [
        ("wae-mmd", {"kernel_choice": "gaussian"}, "kernel_choice must be one of imq, rbf"),
        ("wae-mmd", {"kernel_bandwidth": 0}, "kernel_bandwidth must be a positive number"),
        ("wae-mmd", {"scales": []}, "scales must be a non-empty list"),
        ("wae-mmd", {"reg_weight": -1.0}, "reg_weight must be >= 0"),
        ("info-vae-mmd", {"alpha": 2.0}, "alpha must be at most 1"),
        ("info-vae-mmd", {"alpha": 0.0, "lbd": 0.5}, "alpha + lbd must be at least 1"),
        ("info-vae-mmd", {"lbd": 0.0}, "lbd must be > 0"),
    ],
)
def test_bad_options_are_one_line_errors(objective, options, message):
    with pytest.raises(zoo.ZooError) as info:
        zoo.build_objective(objective, options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_option_on_the_command_line_is_one_line(capsys, tmp_path):
    code, out = cli(
        capsys, "train", "info-vae-mmd-conv-mnist", "--set", "objective.kernel_choice=laplace", "--out", tmp_path / "r"
    )
    assert code != 0 and "kernel_choice must be one of imq, rbf" in out and "Traceback" not in out, out
    assert not (tmp_path / "r").exists()


def test_mmd_needs_two_codes():
    with pytest.raises(zoo.ZooError, match="at least 2 points"):
        mmd(torch.zeros(1, 3), torch.zeros(5, 3))


# -- from the command line ---------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["info-vae-mmd-conv-mnist", "wae-mmd-conv-mnist"])
def test_recipes_train_on_mnist(recipe, data_root, capsys, tmp_path):
    run = tmp_path / "run"
    code, out = cli(
        capsys,
        "train",
        recipe,
        "--data-dir",
        data_root,
        "--max-steps",
        "3",
        "--device",
        "cpu",
        "--set",
        "encoder.channels=4",
        "--set",
        "decoder.channels=4",
        "--no-progress",
        "--out",
        run,
    )
    assert code == 0, out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert np.isfinite(rows[-1]["train_mmd"]) and np.isfinite(rows[-1]["train_recon"])
    code, out = cli(
        capsys, "eval", str(run), "--iw-samples", "3", "--limit", "20", "--no-fid", "--out", str(tmp_path / "eval")
    )
    assert code == 0, out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_images"] == 20 and np.isfinite(metrics["test_recon"])
    if recipe == "wae-mmd-conv-mnist":  # a deterministic encoder: no density, so no ELBO or IW-NLL
        assert metrics["test_nll_iw"] is None and metrics["test_neg_elbo"] is None
    else:
        assert np.isfinite(metrics["test_nll_iw"])


@pytest.mark.parametrize("recipe", ["info-vae-mmd-conv-mnist", "wae-mmd-conv-mnist"])
def test_recipes_train_on_a_colour_folder(recipe, capsys, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    run = tmp_path / "run"
    code, out = cli(
        capsys,
        "train",
        recipe,
        "--data",
        folder,
        "--max-steps",
        "2",
        "--device",
        "cpu",
        "--set",
        "batch_size=8",
        "--set",
        "encoder.channels=4",
        "--set",
        "decoder.channels=4",
        "--no-progress",
        "--out",
        run,
    )
    assert code == 0, out
    assert Image.open(run / "samples" / "epoch-001.png").mode == "RGB"
