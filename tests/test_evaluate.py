"""Evaluation metrics on cases with known answers, and ``zoo eval`` end to end on a tiny run.

Known answers: a model whose decoder ignores z and whose posterior is its prior (every
importance weight equals p(x), so IW estimate = ELBO = log p(x) exactly, KL 0); a linear-Gaussian
model whose marginal likelihood is a closed-form multivariate normal (the IW estimate converges
to it from below, above the ELBO); encoders that ignore chosen latent dimensions (active units);
Gaussian feature sets whose Frechet distance is |m1 - m2|^2 + trace terms in closed form.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from helpers_plugin_source import one_epoch_runs, plugin_from_source
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal

import zoo
from zoo import plugins
from zoo.cli import main
from zoo.estimators import importance_weighted, iw_batch
from zoo.fid import FeatureClassifier, feature_network, frechet_distance
from zoo.metrics import active_units, bits_per_dim, likelihood_is_discrete, standard_error

# -- small models with known answers ---------------------------------------------------------


class GaussianLikelihood(zoo.Likelihood):
    """x ~ N(decoder output, sigma^2 I) over a flat data vector."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, params):
        return Independent(Normal(params, self.sigma), 1)


class LinearDecoder(zoo.Decoder):
    """z -> W z + b."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.latent_size = weight.shape[1]
        self.output_shape = (weight.shape[0],)
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        self.calls: list[int] = []

    def decode(self, z):
        self.calls.append(z.shape[0])
        return z @ self.weight.T + self.bias


class ConstantDecoder(zoo.Decoder):
    """Ignores z: the same parameters for every z (so p(z | x) = p(z))."""

    def __init__(self, latent_size: int, params: torch.Tensor) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.output_shape = tuple(params.shape)
        self.params = nn.Parameter(params)
        self.calls: list[int] = []

    def decode(self, z):
        self.calls.append(z.shape[0])
        return self.params.expand(z.shape[0], *self.params.shape)


class PriorEncoder(zoo.Encoder):
    """q(z | x) = N(0, I) = p(z) for every x."""

    def __init__(self, latent_size: int) -> None:
        super().__init__()
        self.latent_size = latent_size

    def forward(self, x):
        zeros = torch.zeros(x.shape[0], self.latent_size)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)


class LinearGaussianPosterior(zoo.Encoder):
    """The exact posterior's mean with a diagonal, ``inflate``-times wider scale: a good but
    imperfect proposal (the ELBO is strictly below log p(x); importance weights have finite variance)."""

    def __init__(self, weight, bias, sigma: float, inflate: float = 1.3, ignore: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.latent_size = weight.shape[1]
        precision = torch.eye(self.latent_size, dtype=weight.dtype) + weight.T @ weight / sigma**2
        self.cov = torch.linalg.inv(precision)
        self.weight, self.bias, self.sigma, self.inflate = weight, bias, sigma, inflate
        self.ignore = list(ignore)

    def forward(self, x):
        mean = (x - self.bias) @ self.weight @ self.cov.T / self.sigma**2
        if self.ignore:
            mean = mean.clone()
            mean[:, self.ignore] = 0.0  # these dimensions no longer depend on x
        scale = self.inflate * self.cov.diagonal().sqrt().expand_as(mean)
        return Independent(Normal(mean, scale), 1)


def linear_gaussian(latent: int = 2, dims: int = 5, sigma: float = 0.5, seed: int = 0, **encoder_options):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(dims, latent, generator=g)
    bias = torch.randn(dims, generator=g)
    model = zoo.compose(
        LinearGaussianPosterior(weight, bias, sigma, **encoder_options),
        LinearDecoder(weight.clone(), bias.clone()),
        "standard-normal",
        GaussianLikelihood(sigma),
        latent_size=latent,
        data_shape=(dims,),
    )
    marginal = MultivariateNormal(bias, weight @ weight.T + sigma**2 * torch.eye(dims))
    return model.eval(), marginal


def prior_posterior_model(latent: int = 3):
    logits = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(1))
    model = zoo.compose(
        PriorEncoder(latent),
        ConstantDecoder(latent, logits),
        "standard-normal",
        "bernoulli",
        latent_size=latent,
        data_shape=(1, 4, 4),
    )
    return model.eval(), logits


# -- the IW estimate -------------------------------------------------------------------------


def test_posterior_equal_to_prior_makes_iw_equal_elbo_equal_log_px():
    model, logits = prior_posterior_model()
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.5), generator=torch.Generator().manual_seed(2))
    exact = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3)).double()
    est = importance_weighted(model, [x], samples=37)
    assert torch.allclose(est.log_px, exact, atol=1e-5)
    assert torch.allclose(est.elbo, est.log_px, atol=1e-9)
    assert torch.equal(est.kl, torch.zeros(6, dtype=torch.float64))
    assert torch.allclose(est.recon, exact, atol=1e-5)


def test_iw_estimate_is_chunked_and_memory_bounded():
    model, logits = prior_posterior_model()
    x = torch.ones(10, 1, 4, 4)
    model.decoder.calls.clear()
    log_px, elbo, *_ = iw_batch(model, x, samples=95, decode_batch=200)
    assert max(model.decoder.calls) <= 200  # never more than decode_batch decoded images at once
    assert sum(model.decoder.calls) == 95 * 10  # every draw of every image, once
    exact = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3)).double()
    assert torch.allclose(log_px, exact, atol=1e-5)


def test_iw_estimate_approaches_the_exact_marginal_likelihood():
    torch.manual_seed(0)
    model, marginal = linear_gaussian()
    x = marginal.sample((8,))
    exact = marginal.log_prob(x).double()
    est = importance_weighted(model, x.split(4), samples=20000)
    assert (est.log_px >= est.elbo).all()
    assert (est.elbo < exact - 0.01).all()  # the proposal is imperfect: a real gap to close
    assert torch.allclose(est.log_px, exact, atol=0.02), est.log_px - exact


def test_iw_estimate_tightens_with_more_samples():
    torch.manual_seed(1)
    model, marginal = linear_gaussian(inflate=2.0)
    x = marginal.sample((64,))
    exact = float(marginal.log_prob(x).mean())
    gaps = [exact - float(importance_weighted(model, [x], samples=k).log_px.mean()) for k in (1, 10, 1000)]
    assert gaps[0] > gaps[1] > gaps[2] > -0.02
    assert gaps[2] < 0.05


@pytest.mark.parametrize(
    "progress, terminal, shown", [(None, False, False), (None, True, True), (True, False, True), (False, True, False)]
)
def test_the_iw_progress_bar_shows_on_a_terminal_or_when_asked(progress, terminal, shown, monkeypatch):
    """One progress bar (tqdm), on stderr: shown with progress=True, or with None on a terminal; cleared at the end."""
    import io

    class Stderr(io.StringIO):
        def isatty(self) -> bool:
            return terminal

    monkeypatch.setattr(sys, "stderr", Stderr())
    model, _ = prior_posterior_model()
    importance_weighted(model, torch.ones(6, 1, 4, 4).split(3), samples=2, total=6, progress=progress)
    written = sys.stderr.getvalue()
    assert ("IW estimate, K=2" in written) == shown
    if shown:
        assert written.endswith(" \r")  # not left behind: the bar's line is blanked when it closes


def test_samples_below_one_are_refused():
    model, _ = prior_posterior_model()
    with pytest.raises(zoo.ZooError, match="at least 1"):
        importance_weighted(model, [torch.ones(2, 1, 4, 4)], samples=0)


# -- active units, bits per dim, standard error -----------------------------------------------


def test_active_units_counts_dimensions_that_vary_above_the_threshold():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(5000, 4, generator=g)
    means = base * torch.tensor([1.0, 0.3, 0.05, 0.0])  # variances 1, 0.09, 0.0025, 0
    assert active_units(means) == 2
    assert active_units(means, threshold=0.001) == 3
    assert active_units(means[:1]) == 0


def test_active_units_of_a_model_that_ignores_latent_dimensions():
    torch.manual_seed(0)
    model, marginal = linear_gaussian(latent=4, dims=6, ignore=(1, 3))
    est = importance_weighted(model, [marginal.sample((500,))], samples=2)
    assert active_units(est.posterior_mean) == 2


def test_bits_per_dim():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert bits_per_dim(80.0, 784) == pytest.approx(80.0 / (784 * math.log(2)))


def test_bits_per_dim_only_where_the_likelihood_is_discrete_and_the_data_in_its_support():
    model, _ = prior_posterior_model()
    assert likelihood_is_discrete(model, torch.ones(3, 1, 4, 4))
    assert not likelihood_is_discrete(model, torch.full((3, 1, 4, 4), 0.5))  # grey levels under a Bernoulli
    gaussian, marginal = linear_gaussian()
    assert not likelihood_is_discrete(gaussian, marginal.sample((3,)))


def test_bits_per_dim_for_a_likelihood_declaring_grey_levels():
    """The discretized logistic (mixture) declares levels = 256 over [0, 1]: 8-bit images are in its
    support, so zoo eval reports bits/dim for them; values between the levels or outside [0, 1] are not."""
    torch.manual_seed(0)
    for recipe in ("vae-resnet-dl-mnist", "vae-resnet-dlm-fashion-mnist"):
        model = zoo.create(recipe)
        grey = torch.randint(0, 256, (2, 1, 28, 28)).float() / 255
        assert likelihood_is_discrete(model, grey), recipe
        assert not likelihood_is_discrete(model, grey + 0.3 / 255), recipe
        assert not likelihood_is_discrete(model, grey * 0 + 1.5), recipe


def test_standard_error():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert standard_error(values) == pytest.approx(values.std().item() / 2)
    assert standard_error(torch.tensor([5.0])) == 0.0


# -- FID ---------------------------------------------------------------------------------------


class Flat(nn.Module):
    """Features = the pixels themselves, so Frechet distances have closed forms."""

    num_features = 4

    def forward(self, x):
        return x.flatten(1).double()


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 1, 2, 2, generator=g)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0]).reshape(1, 1, 2, 2)
    b = torch.randn(20000, 1, 2, 2, generator=g) * 2 + shift
    # |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2) with S1 = I, S2 = 4 I: 5.25 + 4 * (1 + 4 - 4)
    assert frechet_distance(a.split(5000), b.split(5000), Flat()) == pytest.approx(5.25 + 4.0, rel=0.03)


def test_fid_of_a_set_against_itself_is_zero_and_positive_against_another():
    torch.manual_seed(0)
    features = FeatureClassifier(1, 10).eval()
    from zoo.fid import _Features

    extractor = _Features(features)
    g = torch.Generator().manual_seed(3)
    a = torch.rand(400, 1, 28, 28, generator=g)
    b = torch.rand(400, 1, 28, 28, generator=g) ** 3  # darker images
    same = frechet_distance(a.split(200), a.split(200), extractor)
    other = frechet_distance(a.split(200), b.split(200), extractor)
    assert abs(same) < 1e-3
    assert other > 100 * max(abs(same), 1e-6) and other > 1e-3


def tiny_dataset(binarized: bool = False):
    from zoo.data import DatasetInfo

    return DatasetInfo(
        "tiny-eval", "tiny", (1, 28, 28), tiny_load, {}, {"train": 300, "test": 60}, binarized=binarized, num_classes=4
    )


def tiny_load(root, split, download):
    """Noisy copies of 4 prototypes, one per class: classifiable, uint8 [N, 1, 28, 28]."""
    prototypes = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(42))
    g = torch.Generator().manual_seed(1 if split == "train" else 2)
    n = 300 if split == "train" else 60
    labels = torch.randint(0, 4, (n,), generator=g)
    images = (0.8 * prototypes[labels] + 0.2 * torch.rand(n, 1, 28, 28, generator=g)) * 255
    return images.round().to(torch.uint8), labels


def test_feature_network_is_trained_once_cached_and_described(tmp_path, monkeypatch):
    net, record = feature_network(tiny_dataset(), cache=tmp_path)
    assert net.num_features == 128
    assert record["test_accuracy"] > 0.5  # chance is 0.25; 3 steps of training on 300 images
    assert {"architecture", "epochs", "seed", "test_accuracy", "data_sha256"} <= set(record)
    files = sorted(p.suffix for p in tmp_path.iterdir())
    assert files == [".json", ".pt"]
    assert json.loads(next(tmp_path.glob("*.json")).read_text()) == record

    import zoo.fid

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(zoo.fid, "train_feature_classifier", no_training)
    again, again_record = feature_network(tiny_dataset(), cache=tmp_path)
    assert again_record == record
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(again(x), net(x))


def test_inception_features_need_torch_fidelity(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails
    from zoo.fid import inception_features

    with pytest.raises(zoo.ZooError, match="torch-fidelity"):
        inception_features()


# -- zoo eval end to end ---------------------------------------------------------------------

PLUGIN_MODULE = "zoo_eval_tiny"

TINY_PLUGIN = '''
"""Test plugin (tests/test_evaluate.py): a tiny grey-level and a tiny binarized data set."""
import zoo
from zoo.data import DatasetInfo


def load(root, split, download):
    import torch

    prototypes = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(42))
    g = torch.Generator().manual_seed(1 if split == "train" else 2)
    n = 200 if split == "train" else 100
    labels = torch.randint(0, 4, (n,), generator=g)
    images = (0.8 * prototypes[labels] + 0.2 * torch.rand(n, 1, 28, 28, generator=g)) * 255
    return images.round().to(torch.uint8), labels


@zoo.hookimpl
def register_datasets(register):
    sizes = {"train": 200, "test": 100}
    register(DatasetInfo("tiny-grey", "tiny grey levels", (1, 28, 28), load, {}, sizes, num_classes=4))
    register(DatasetInfo("tiny-bin", "tiny, binarized", (1, 28, 28), load, {}, sizes, binarized=True, num_classes=4))


@zoo.hookimpl
def register_recipes(register):
    for dataset in ("tiny-grey", "tiny-bin"):
        register(zoo.Recipe(id=f"{dataset}-vae", encoder="conv-mnist", decoder="conv-mnist", prior="standard-normal",
                            likelihood="bernoulli", latent_size=4, dataset=dataset,
                            encoder_options={"channels": 4}, decoder_options={"channels": 4},
                            training=zoo.Training(epochs=1, batch_size=50)))
'''


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    with plugin_from_source(tmp_path_factory.mktemp("site"), PLUGIN_MODULE, "tinyeval", TINY_PLUGIN) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def runs(tiny_zoo, tmp_path_factory):
    """One-epoch runs on the tiny grey-level and binarized data sets."""
    return one_epoch_runs(tiny_zoo, tmp_path_factory.mktemp("runs"), ("tiny-grey", "tiny-bin"))


def zoo_eval_json(capsys, *args) -> dict:
    capsys.readouterr()
    main(["eval", *map(str, args), "--json", "--device", "cpu"])
    return json.loads(capsys.readouterr().out)


KEYS = {"test_neg_elbo", "test_nll_iw", "test_nll_iw_stderr", "iw_samples", "bits_per_dim", "active_units", "fid"}


def test_zoo_eval_json_on_a_one_epoch_run(runs, tiny_zoo, capsys):
    with plugins.using(*tiny_zoo):
        result = zoo_eval_json(capsys, runs / "tiny-grey", "--iw-samples", 50, "--limit", 40)
    assert set(result) >= KEYS
    assert result["iw_samples"] == 50 and result["n_images"] == 40 and result["model"] == "tiny-grey-vae"
    for key in ("test_neg_elbo", "test_nll_iw", "test_nll_iw_stderr", "fid"):
        assert math.isfinite(result[key]), key
    assert result["test_nll_iw"] <= result["test_neg_elbo"]
    assert result["test_neg_elbo"] == pytest.approx(result["test_recon"] + result["test_kl"], abs=1e-6)
    assert result["bits_per_dim"] is None  # grey levels under a Bernoulli: not a likelihood
    assert 0 <= result["active_units"] <= 4
    out = runs / "tiny-grey" / "eval"
    for name in ("reconstructions", "samples", "interpolation"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "metrics.json").read_text())["test_nll_iw"] == result["test_nll_iw"]


def test_zoo_eval_on_binarized_data_reports_bits_per_dim(runs, tiny_zoo, capsys, tmp_path):
    with plugins.using(*tiny_zoo):
        result = zoo_eval_json(
            capsys,
            runs / "tiny-bin" / "checkpoints" / "last.pt",
            "--iw-samples",
            20,
            "--no-fid",
            "--out",
            tmp_path / "ev",
        )
    assert result["n_images"] == 100 and result["fid"] is None
    assert result["bits_per_dim"] == pytest.approx(result["test_nll_iw"] / (784 * math.log(2)))
    # The binarized test set is the trainer's fixed draw, so the ELBOs agree within MC error.
    from zoo.checkpoint import load_checkpoint

    logged = load_checkpoint(runs / "tiny-bin")["history"][-1]["test_loss"]
    assert result["test_neg_elbo"] == pytest.approx(logged, abs=3 * result["test_neg_elbo_stderr"] + 1.0)
    assert (tmp_path / "ev" / "samples.png").is_file()


def test_zoo_eval_prints_a_summary(runs, tiny_zoo, capsys, tmp_path):
    with plugins.using(*tiny_zoo):
        main(
            [
                "eval",
                str(runs / "tiny-grey"),
                "--iw-samples",
                "5",
                "--limit",
                "10",
                "--no-fid",
                "--out",
                str(tmp_path),
                "--device",
                "cpu",
            ]
        )
    out = capsys.readouterr().out
    assert "IW NLL (K=5)" in out and "active units" in out and "negative ELBO" in out
    with plugins.using(*tiny_zoo):
        main(
            [
                "eval",
                str(runs / "tiny-grey"),
                "--iw-samples",
                "5",
                "--limit",
                "10",
                "--no-fid",
                "--out",
                str(tmp_path / "one"),
                "--device",
                "cpu",
                "--threads",
                "1",
            ]
        )
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["threads"] == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--iw-samples", "0"], "--iw-samples must be at least 1 (got 0)"),
        (["--limit", "0"], "--limit must be at least 1 (got 0)"),
        (["--batch-size", "-3"], "--batch-size must be at least 1 (got -3)"),
        (["--threads", "0"], "--threads must be at least 1 (got 0)"),
    ],
)
def test_bad_numbers_are_one_line_errors(args, expected, runs, tiny_zoo, capsys):
    with plugins.using(*tiny_zoo):
        message = eval_error(capsys, runs / "tiny-grey", *args)
    assert message == f"Error: {expected}"


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    message = eval_error(capsys, tmp_path / "nowhere")
    assert "does not exist" in message
    (tmp_path / "empty").mkdir()
    assert "without checkpoints/last.pt" in eval_error(capsys, tmp_path / "empty")


def eval_error(capsys, *args) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["eval", *map(str, args)])
    err = capsys.readouterr().err
    assert exited.value.code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
