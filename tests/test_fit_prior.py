"""Post-hoc priors: the samplers of the ``samplers`` plugin on synthetic codes, a model whose prior is
a sampler id (composition, zoo.load), and ``zoo fit-prior`` end to end on a tiny trained run."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import torch
from helpers_cli import run_zoo
from helpers_tiny import write_tiny_plugin

import zoo
from zoo import plugins
from zoo.conformance import parametrize_plugin_checks

# -- the samplers on synthetic codes ------------------------------------------------------------

FAST = {"hidden": 32, "epochs": 40, "batch_size": 100, "lr": 1e-3}
SAMPLERS = {
    "gmm": {"components": 2},
    "maf": FAST,
    "iaf": FAST,
    "realnvp": FAST,
    "two-stage": {"width": 64, "epochs": 40, "batch_size": 100, "lr": 1e-3},
}


def two_modes(n: int = 2000, size: int = 2, seed: int = 0) -> torch.Tensor:
    """Codes from two well separated Gaussian modes (equal weights) in ``size`` dimensions."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(2, size)
    centres[0, 0], centres[1, 0], centres[1, 1 % size] = -3.0, 3.0, 1.0
    labels = torch.randint(0, 2, (n,), generator=g)
    return centres[labels] + 0.5 * torch.randn(n, size, generator=g)


def build(sampler_id: str, latent_size: int, **options):
    return plugins.get_registry().get("sampler", sampler_id).load()(latent_size=latent_size, **options)


def standard_normal_log_likelihood(codes: torch.Tensor) -> float:
    return float(torch.distributions.Normal(0.0, 1.0).log_prob(codes).sum(-1).mean())


@pytest.mark.parametrize("sampler_id", list(SAMPLERS))
def test_each_sampler_fits_two_modes(sampler_id):
    codes = two_modes()
    sampler = build(sampler_id, 2, **SAMPLERS[sampler_id])
    figures = sampler.fit(codes, seed=0)
    assert isinstance(figures, dict) and figures
    torch.manual_seed(1)
    draws = sampler.sample(4000)
    assert draws.shape == (4000, 2) and torch.isfinite(draws).all()
    # the moments of the draws are the codes' (the two-stage decoder mean shrinks the spread a little)
    assert torch.allclose(draws.mean(0), codes.mean(0), atol=0.25)
    assert torch.allclose(draws[:, 0].std(), codes[:, 0].std(), rtol=0.15)
    assert 0.4 < float((draws[:, 0] < 0).float().mean()) < 0.6  # both modes, in equal parts
    if sampler.has_density:
        with torch.no_grad():
            fitted = float(sampler.log_prob(codes).mean())
        assert fitted > standard_normal_log_likelihood(codes) + 3.0
        assert math.isclose(figures["log_likelihood"], fitted, rel_tol=1e-4, abs_tol=1e-4)
        assert sampler.log_prob(codes.reshape(4, 500, 2)).shape == (4, 500)  # any leading shape
    else:
        with pytest.raises(zoo.ZooError, match="no density"):
            sampler.log_prob(codes)


@pytest.mark.parametrize("sampler_id", ["maf", "iaf", "realnvp"])
def test_flows_are_invertible_and_normalised_in_more_dimensions(sampler_id):
    codes = two_modes(n=1000, size=5)
    sampler = build(sampler_id, 5, **{**FAST, "epochs": 5})
    sampler.fit(codes)
    with torch.no_grad():
        u, _ = sampler.to_noise(codes[:50])
        assert torch.allclose(sampler.to_code(u), codes[:50], atol=1e-4)
    # a flow's density on one dimension integrates to one
    line = build(sampler_id, 1, **{**FAST, "epochs": 5})
    line.fit(codes[:, :1])
    grid = torch.linspace(-12, 12, 20001)[:, None]
    with torch.no_grad():
        mass = float(torch.trapezoid(line.log_prob(grid).exp(), grid[:, 0]))
    assert abs(mass - 1.0) < 1e-2


def test_gmm_is_scikit_learns_mixture():
    from sklearn.mixture import GaussianMixture

    codes = two_modes(size=3)
    sampler = build("gmm", 3, components=3)
    sampler.fit(codes, seed=4)
    reference = GaussianMixture(3, covariance_type="full", random_state=4).fit(codes.double().numpy())
    expected = torch.as_tensor(reference.score_samples(codes.double().numpy()))
    assert torch.allclose(sampler.log_prob(codes).double(), expected, atol=1e-3)


@pytest.mark.parametrize(
    ("sampler_id", "options", "message"),
    [
        ("gmm", {"components": 0}, "components must be a positive integer"),
        ("gmm", {"init": "nearest"}, "init must be 'kmeans' or 'random'"),
        ("maf", {"epochs": 0}, "epochs must be a positive integer"),
        ("realnvp", {"lr": -1.0}, "lr must be a positive number"),
        ("two-stage", {"depth": 0}, "depth must be an integer of at least 1"),
    ],
)
def test_bad_options_are_one_line_errors(sampler_id, options, message):
    with pytest.raises(zoo.ZooError, match=message):
        build(sampler_id, 2, **options)


def test_bad_codes_are_one_line_errors():
    with pytest.raises(zoo.ZooError, match=r"codes shaped \[N, 2\]"):
        build("gmm", 2).fit(torch.zeros(10, 3))
    with pytest.raises(zoo.ZooError, match="at least 10 codes"):
        build("gmm", 2).fit(torch.zeros(5, 2))
    with pytest.raises(zoo.ZooError, match="NaN"):
        build("maf", 2, epochs=1).fit(torch.full((20, 2), float("nan")))


# -- a model whose prior is a sampler --------------------------------------------------------


def test_a_sampler_id_composes_as_the_prior_and_rebuilds():
    from zoo.composition import from_spec

    model = zoo.compose("conv-mnist", "conv-mnist", "gmm", latent_size=4, prior_options={"components": 3})
    assert type(model.prior).__name__ == "GaussianMixtureSampler"
    assert model.spec["components"]["prior"]["id"] == "gmm"
    assert model.spec["components"]["prior"]["plugin"] == "samplers"
    again = from_spec(model.spec)
    assert again.prior.weights.shape == (3,)
    # a sampler object is recorded by its id too
    made = zoo.compose("conv-mnist", "conv-mnist", build("realnvp", 4, hidden=8), latent_size=4)
    assert made.spec["components"]["prior"]["id"] == "realnvp"
    assert made.spec["components"]["prior"]["options"]["hidden"] == 8


def test_a_sampler_sharing_a_priors_id_is_named_sampler_id():
    from zoo.composition import from_spec

    assert type(zoo.compose("conv-mnist", "conv-mnist", "realnvp", latent_size=4).prior).__name__ == "RealNVPPrior"
    model = zoo.compose("conv-mnist", "conv-mnist", "sampler:realnvp", latent_size=4, prior_options={"hidden": 8})
    assert type(model.prior).__name__ == "RealNVPSampler"
    assert model.spec["components"]["prior"]["kind"] == "sampler"
    assert type(from_spec(model.spec).prior).__name__ == "RealNVPSampler"
    with pytest.raises(zoo.UnknownIdError, match="unknown sampler 'realnvq'; did you mean 'realnvp'"):
        zoo.compose("conv-mnist", "conv-mnist", "sampler:realnvq", latent_size=4)


def test_a_sampler_naming_encoder_receives_the_models_encoder():
    class EncoderAware(zoo.Sampler):
        def __init__(self, latent_size, encoder):
            super().__init__()
            self.latent_size = latent_size
            self.encoder = encoder

        def forward(self):
            return torch.distributions.Independent(torch.distributions.Normal(torch.zeros(4), 1.0), 1)

        def fit(self, codes):
            return {}

    zoo.register("sampler", "encoder-aware", EncoderAware)
    model = zoo.compose("conv-mnist", "conv-mnist", "encoder-aware", latent_size=4)
    assert model.prior.encoder is model.encoder
    assert not any(k.startswith("prior.encoder") for k in model.state_dict())  # stored once, under the model


class _Shifted(zoo.Sampler):
    """N(mean of the codes, I): the smallest sampler with a density."""

    def __init__(self, latent_size):
        super().__init__()
        self.latent_size = latent_size
        self.register_buffer("loc", torch.zeros(latent_size))

    def forward(self):
        return torch.distributions.Independent(torch.distributions.Normal(self.loc, 1.0), 1)

    def fit(self, codes):
        self.loc.copy_(codes.mean(0))
        return {"codes": len(codes)}


class _SamplerPlugin:
    @zoo.hookimpl
    def register_samplers(register):
        register("shifted", _Shifted, description="N(mean, I)")
        register("not-a-sampler", torch.nn.Linear)


def test_the_register_samplers_hook_registers_samplers_and_checks_them():
    registry, _ = plugins.build(plugins=[("mine", _SamplerPlugin)], entry_points=False)
    assert "not-a-sampler" not in registry.ids("sampler")
    error = registry.plugins["mine"].error or ""
    assert "not-a-sampler" in error and "zoo.Sampler" in error

    class Good:
        @zoo.hookimpl
        def register_samplers(register):
            register("shifted", _Shifted, description="N(mean, I)")

    registry, pm = plugins.build(plugins=[("mine", Good)])
    assert registry.ids("sampler", "shift*") == ["shifted"]
    with plugins.using(registry, pm):
        model = zoo.compose("conv-mnist", "conv-mnist", "shifted", latent_size=4)
        assert model.prior.fit(torch.ones(10, 4)) == {"codes": 10}
        assert torch.equal(model.prior.loc, torch.ones(4))


def test_zoo_list_and_info_show_the_samplers(capsys):
    code, out, _ = run_zoo(capsys, "list", "--kind", "sampler")
    assert code == 0
    assert {line.split()[0] for line in out.splitlines()} >= set(SAMPLERS)
    code, out, _ = run_zoo(capsys, "info", "gmm")
    assert code == 0 and "sampler gmm" in out and "components: int" in out and "default 10" in out
    code, out, _ = run_zoo(capsys, "info", "maf", "--json")
    assert code == 0 and json.loads(out)["kind"] == "sampler"


# -- zoo fit-prior end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-epoch run of the tiny model (4 latents, 16x16 images), with the samplers loaded."""
    folder = write_tiny_plugin(tmp_path_factory.mktemp("tinyplugin"))
    saved = os.environ.get("ZOO_PLUGINS")
    os.environ["ZOO_PLUGINS"] = "aevb,tiny,samplers,flows"  # flows registers a prior called realnvp too
    sys.path.insert(0, str(folder))
    plugins.reset()
    try:
        from zoo.trainer import Trainer

        run = tmp_path_factory.mktemp("runs") / "tiny"
        Trainer("tiny-vae", overrides={"epochs": 1}, out=run, device="cpu", progress=False).fit()
        yield run
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("tiny_plugin", None)
        if saved is None:
            os.environ.pop("ZOO_PLUGINS", None)
        else:
            os.environ["ZOO_PLUGINS"] = saved
        plugins.reset()


def eval_json(capsys, run, *args) -> dict:
    code, out, err = run_zoo(capsys, "eval", run, "--json", "--device", "cpu", "--no-fid", "--limit", 40, *args)
    assert code == 0, err
    return json.loads(out)


def test_fit_prior_gmm_end_to_end(tiny_run, tmp_path, capsys):
    out = tmp_path / "gmm"
    code, stdout, err = run_zoo(capsys, "fit-prior", tiny_run, "--prior", "gmm", "--set", "prior.components=3",
                                "--out", out)  # fmt: skip
    assert code == 0, err
    assert stdout.strip() == str(out)
    model = zoo.load(out)
    assert type(model.prior).__name__ == "GaussianMixtureSampler" and model.prior.components == 3
    assert not torch.allclose(model.prior.means, torch.zeros(3, 4))  # fitted, and the fit was stored
    source = zoo.load(tiny_run)
    for name, tensor in source.state_dict().items():
        if not name.startswith("prior."):
            assert torch.equal(model.state_dict()[name], tensor)  # the trained model is unchanged
    fitted = json.loads((out / "fit.json").read_text())
    assert fitted["sampler"] == "gmm" and fitted["options"] == {"components": 3} and fitted["codes"] == 2000
    assert fitted["fit"]["log_likelihood"] > fitted["fit"]["standard_normal_log_likelihood"]
    assert json.loads((out / "config.json").read_text())["fitted_prior"]["source_run"] == str(tiny_run)
    # zoo eval scores the model with its new prior; zoo sample draws through it
    before, after = eval_json(capsys, tiny_run, "--iw-samples", 20), eval_json(capsys, out, "--iw-samples", 20)
    assert after["test_nll_iw"] is not None and math.isfinite(after["test_nll_iw"])
    assert after["test_recon"] == pytest.approx(before["test_recon"], rel=0.05)  # same encoder and decoder
    code, _, err = run_zoo(capsys, "sample", out, "--n", 16, "--out", tmp_path / "s.png")
    assert code == 0 and (tmp_path / "s.png").is_file(), err
    # the source run is untouched; a second fit refuses the now non-empty folder
    assert not (tiny_run / "fit.json").exists()
    code, _, err = run_zoo(capsys, "fit-prior", tiny_run, "--prior", "gmm", "--out", out)
    assert code == 1 and "not empty" in err and "--overwrite" in err


def test_fit_prior_flow_and_two_stage_end_to_end(tiny_run, tmp_path, capsys):
    out = zoo.fit_prior(tiny_run, "realnvp", {"hidden": 16, "batch_size": 200}, out=tmp_path / "nvp", epochs=2)
    model = zoo.load(out)
    assert type(model.prior).__name__ == "RealNVPSampler"
    assert json.loads((out / "fit.json").read_text())["settings"]["epochs"] == 2
    assert math.isfinite(eval_json(capsys, out, "--iw-samples", 10)["test_nll_iw"])
    # a sampler without a density: zoo eval reports IW-NLL null with a note, and still samples
    two = zoo.fit_prior(tiny_run, "two-stage", {"width": 32, "batch_size": 200}, out=tmp_path / "two", epochs=2)
    result = eval_json(capsys, two, "--iw-samples", 10)
    assert result["test_nll_iw"] is None and result["test_neg_elbo"] is None
    assert "no density" in result["test_nll_iw_note"]
    assert (two / "eval" / "samples.png").is_file()
    code, out_text, _ = run_zoo(capsys, "eval", two, "--device", "cpu", "--no-fid", "--limit", 20, "--out",
                                tmp_path / "e2")  # fmt: skip
    assert code == 0 and "no density" in out_text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prior", "gmn"], "unknown sampler 'gmn'; did you mean 'gmm'"),
        (["--prior", "gmm", "--set", "components=3"], "--set expects prior.KEY=VALUE"),
        (["--prior", "gmm", "--set", "prior.colours=3"], "has no option 'colours'"),
        (["--prior", "gmm", "--set", "prior.components=0"], "components must be a positive integer"),
        (["--prior", "gmm", "--epochs", "3"], "not trained in epochs"),
        (["--prior", "maf", "--epochs", "0"], "--epochs must be a positive integer"),
    ],
)
def test_fit_prior_mistakes_are_one_line_errors(args, message, tiny_run, tmp_path, capsys):
    code, out, err = run_zoo(capsys, "fit-prior", tiny_run, *args, "--out", tmp_path / "x")
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_fit_prior_refuses_what_is_not_a_run(tmp_path, capsys):
    code, _, err = run_zoo(capsys, "fit-prior", tmp_path, "--prior", "gmm")
    assert code == 1 and "not a run directory" in err
    code, _, err = run_zoo(capsys, "fit-prior", tmp_path / "absent", "--prior", "gmm")
    assert code == 1 and "not a run directory" in err


def test_fit_prior_writes_beside_the_run_by_default_and_never_into_it(tiny_run, capsys):
    out = zoo.fit_prior(tiny_run, "gmm", {"components": 2})
    assert out == tiny_run.parent / "tiny-gmm" and (out / "checkpoints" / "last.pt").is_file()
    before = sorted(p.name for p in tiny_run.rglob("*"))
    code, _, err = run_zoo(capsys, "fit-prior", tiny_run, "--prior", "gmm", "--out", tiny_run / "fitted")
    assert code == 1 and "inside the source run" in err
    assert sorted(p.name for p in tiny_run.rglob("*")) == before


SMALL = {"hidden": 8, "epochs": 5}
SMALL_SAMPLERS = {
    "sampler:maf": SMALL,
    "sampler:iaf": SMALL,
    "sampler:realnvp": SMALL,
    "sampler:two-stage": {"width": 16, "epochs": 5},
}


@parametrize_plugin_checks("samplers", options=SMALL_SAMPLERS)
def test_samplers_conform(check):
    check()
