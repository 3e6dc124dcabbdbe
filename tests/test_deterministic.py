"""Deterministic encoders (an autoencoder's: q(z|x) is a zoo.PointMass) are first-class: the ``ae``
objective trains them, objectives that need a density refuse them, the trainer's test metrics and
``zoo eval`` report what applies (reconstruction, squared error, FID, active units) and mark the
ELBO and IW-NLL as not applicable, and the conformance kit checks them."""

from __future__ import annotations

import json

import helpers_random_images as random_images
import pytest
import torch
from helpers_cli import run_zoo
from helpers_random_images import SIDE
from torch import nn

import zoo
from zoo import estimators, in_process, plugins
from zoo.composition import check_objective_fits
from zoo.conformance.components import check_encoder_deterministic, check_encoder_log_prob
from zoo.conformance.subject import Settings, Subject
from zoo.distributions import NoDensityError, PointMass
from zoo.errors import IncompatibleComponentsError
from zoo.eval_results import NO_DENSITY_NOTE
from zoo.evaluate import evaluate

DATA = (1, SIDE, SIDE)
LATENT = 3


class PointEncoder(zoo.Encoder):
    """A linear deterministic encoder: x -> z."""

    deterministic = True

    def __init__(self, latent_size: int, data_shape: tuple = DATA, lie: str = "") -> None:
        super().__init__()
        self.latent_size = latent_size
        self.lie = lie
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, latent_size))

    def forward(self, x):
        z = self.net(x)
        if self.lie == "gaussian":  # says deterministic, returns a density
            return zoo.diagonal_gaussian(z, torch.zeros_like(z))
        return PointMass(z)


class UndeclaredPointEncoder(PointEncoder):
    """Returns a PointMass without saying deterministic = True."""

    deterministic = False


@pytest.fixture
def registered():
    in_process.forget()
    plugins.reset()
    zoo.register("dataset", random_images.dataset("det-data"))
    zoo.register("encoder", "point", PointEncoder)
    zoo.register("encoder", "undeclared-point", UndeclaredPointEncoder)
    yield
    in_process.forget()
    plugins.reset()


@pytest.fixture(autouse=True)
def _no_cpu_load_reading(monkeypatch):
    import zoo.threads

    monkeypatch.setattr(zoo.threads, "_cpu_ticks", lambda: None)


def _model(encoder="point"):
    torch.manual_seed(0)
    return zoo.compose(encoder, "deep-mlp", "standard-normal", "bernoulli", latent_size=LATENT, data_shape=DATA)


def _batch(n=6):
    return torch.rand(n, *DATA, generator=torch.Generator().manual_seed(3)).bernoulli()


# -- the model and the ae objective -------------------------------------------------------------


def test_the_model_knows_its_encoder_is_deterministic_and_has_no_elbo(registered):
    model, x = _model(), _batch()
    assert model.deterministic and not _model("deep-mlp").deterministic
    for call in (lambda: model.elbo(x), lambda: model(x), lambda: model.iwae(x, 3), lambda: next(model.iw_terms(x, 3))):
        with pytest.raises(NoDensityError, match="deterministic; score it with model.reconstruction_nll"):
            call()
    z = model.encoder(x).mean
    expected = -model.likelihood(model.decoder(z)).log_prob(x)
    assert torch.allclose(model.reconstruction_nll(x), expected)
    assert model.reconstruction_nll(x).shape == (6,)


def test_the_ae_objective_is_the_reconstruction_at_the_code(registered):
    model, x = _model(), _batch()
    objective, record = zoo.build_objective("ae")
    assert objective.needs_density is False and record["id"] == "ae"
    loss, logs = objective(model, x)
    assert torch.allclose(loss, model.reconstruction_nll(x).mean())
    assert set(logs) == {"recon"} and torch.allclose(logs["recon"], loss)
    loss.backward()
    assert all(p.grad is not None for p in [*model.encoder.parameters(), *model.decoder.parameters()])
    stochastic = _model("deep-mlp")  # on a stochastic encoder: the ELBO's reconstruction term alone
    assert torch.isfinite(objective(stochastic, x).loss)


# -- refusing objectives that need a density -----------------------------------------------------


@pytest.mark.parametrize("objective", ["elbo", "iwae", "miwae", "piwae", "ciwae"])
def test_objectives_that_need_a_density_are_refused_with_what_to_use(registered, objective):
    model = _model()
    built, record = zoo.build_objective(objective)
    with pytest.raises(IncompatibleComponentsError) as caught:
        check_objective_fits(model, built, record)
    message = str(caught.value)
    assert "\n" not in message
    assert f"objective {objective!r} needs q(z|x) to have a density, but encoder 'point' is deterministic" in message
    listed = message.split("train it with an objective for autoencoders: ")[1].split(", ")
    assert "ae" in listed and "elbo" not in listed and listed == sorted(listed)
    check_objective_fits(model, zoo.build_objective("ae")[0])  # fits
    check_objective_fits(_model("deep-mlp"), built)  # a stochastic encoder takes any


def test_the_trainer_refuses_before_making_a_run_directory(registered, tmp_path):
    with pytest.raises(IncompatibleComponentsError, match="objective 'iwae' needs q"):
        zoo.Trainer(_model(), dataset="det-data", objective="iwae", out=tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


def test_zoo_train_refuses_in_one_line_with_a_non_zero_exit(registered, tmp_path, capsys):
    args = ["--set", "encoder=point", "--set", "dataset=det-data", "--out", tmp_path / "run", "--device", "cpu"]
    code, _, err = run_zoo(capsys, "train", "vae-conv", *args)
    assert code != 0 and "Traceback" not in err
    assert "objective 'elbo' needs q(z|x) to have a density, but encoder 'point' is deterministic" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
    code, _, err = run_zoo(capsys, "train", "vae-conv", *args, "--set", "objective=ae", "--max-steps", "2")
    assert code == 0, err


# -- training and evaluating -------------------------------------------------------------------


def _train(tmp_path, model=None, epochs=2):
    trainer = zoo.Trainer(
        model or _model(), dataset="det-data", objective="ae", out=tmp_path / "run", device="cpu", progress=False,
        training={"epochs": epochs, "batch_size": 50, "lr": 1e-2},
    )  # fmt: skip
    return trainer, trainer.fit()


def test_training_reports_the_reconstruction_as_the_test_loss(registered, tmp_path, capsys):
    trainer, history = _train(tmp_path)
    for row in history:
        assert "test_kl" not in row
        assert row["test_loss"] == row["test_recon"] > 0
        assert row["train_recon"] > 0
    assert history[1]["test_loss"] < history[0]["test_loss"]
    assert "recon only: deterministic encoder" in capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["test_loss"] for r in rows] == [r["test_loss"] for r in history]
    loaded = zoo.load(tmp_path / "run" / "checkpoints" / "best.pt")
    assert loaded.deterministic


def test_a_stochastic_model_keeps_its_elbo_metrics_exactly(registered, tmp_path):
    from zoo.distributed import Dist

    trainer = zoo.Trainer(
        _model("deep-mlp"), dataset="det-data", out=tmp_path / "run", device="cpu", progress=False,
        training={"epochs": 1, "batch_size": 50},
    )  # fmt: skip
    row = trainer.fit()[0]
    assert {"test_loss", "test_recon", "test_kl"} <= set(row)
    torch.manual_seed(5)
    ours = trainer.evaluate()
    torch.manual_seed(5)
    batches = trainer.test_data.eval_batches(trainer.settings.eval_batch_size)
    plain = estimators.test_elbo(trainer.model, batches, trainer._autocast, Dist())
    assert ours == plain


def test_eval_marks_the_bounds_not_applicable_and_reports_what_applies(registered, tmp_path, capsys):
    _train(tmp_path)
    result = evaluate(tmp_path / "run", fid=False, images=False, device="cpu")
    for key in ("test_neg_elbo", "test_nll_iw", "bits_per_dim"):
        assert result[key] is None
        assert result[f"{key}_note"] == NO_DENSITY_NOTE
    assert NO_DENSITY_NOTE == "not applicable: the encoder is deterministic, q(z|x) has no density"
    assert result["test_kl"] is None and result["iw_samples"] is None
    assert result["test_recon"] > 0 and result["test_mse"] > 0
    assert 0 <= result["active_units"] <= LATENT
    written = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert written["test_nll_iw"] is None and written["test_nll_iw_note"] == NO_DENSITY_NOTE
    # the text report and zoo compare read the nulls without failing
    code, out, err = run_zoo(capsys, "eval", tmp_path / "run", "--no-fid", "--limit", "50", "--device", "cpu")
    assert code == 0, err
    assert "n/a (not applicable: the encoder is deterministic" in out and "squared error" in out
    code, out, err = run_zoo(capsys, "compare", tmp_path / "run")
    assert code == 0, err


def test_eval_squared_error_is_that_of_the_reconstructions(registered, tmp_path):
    trainer, _ = _train(tmp_path, epochs=1)
    result = evaluate(tmp_path / "run", fid=False, images=False, device="cpu", limit=20)
    model = zoo.load(tmp_path / "run" / "checkpoints" / "last.pt").eval()
    x = trainer.test_data.eval_batches(20).__next__()
    with torch.no_grad():
        expected = (model.reconstruct(x) - x).square().flatten(1).sum(1).mean()
    assert result["test_mse"] == pytest.approx(float(expected), rel=1e-5)


def test_a_stochastic_model_gets_its_squared_error_too(registered, tmp_path):
    zoo.Trainer(
        _model("deep-mlp"), dataset="det-data", out=tmp_path / "run", device="cpu", progress=False,
        training={"epochs": 1, "batch_size": 50},
    ).fit()  # fmt: skip
    result = evaluate(tmp_path / "run", fid=False, images=False, device="cpu", iw_samples=5)
    assert result["test_nll_iw"] is not None and result["test_mse"] > 0
    assert "test_nll_iw_note" not in result


def test_the_model_card_says_why_there_is_no_likelihood():
    from zoo.model_card import _results

    metrics = {"test_nll_iw": None, "test_nll_iw_note": NO_DENSITY_NOTE, "test_recon": 12.0, "n_images": 10}
    text = "\n".join(_results(metrics, {}, {}, "here"))
    assert NO_DENSITY_NOTE in text and "| test NLL, importance-weighted" in text


# -- the conformance kit -------------------------------------------------------------------------


def _subject(target, **options):
    return Subject("encoder", target, Settings("in-process", {f"encoder:{target}": options}))


def test_the_kit_requires_a_point_mass_of_a_deterministic_encoder(registered):
    check_encoder_deterministic(_subject("point"))
    with pytest.raises(pytest.fail.Exception, match="must return a zoo.PointMass"):
        check_encoder_deterministic(_subject("point", lie="gaussian"))
    with pytest.raises(pytest.fail.Exception, match="must declare deterministic = True"):
        check_encoder_deterministic(_subject("undeclared-point"))
    check_encoder_deterministic(_subject("deep-mlp"))


def test_the_kit_skips_log_prob_checks_of_a_deterministic_encoder(registered):
    with pytest.raises(pytest.skip.Exception, match="deterministic: q\\(z\\|x\\) is a point"):
        check_encoder_log_prob(_subject("point"))


def test_the_kit_checks_an_autoencoder_objective_on_a_deterministic_model(registered):
    from zoo.conformance.harness import CHECKS
    from zoo.conformance.objectives import _objective_setup

    subject = Subject("objective", "ae", Settings("zoo"))
    model, objective, _ = _objective_setup(subject)
    assert model.deterministic and objective.needs_density is False
    for _, check in CHECKS["objective"]:
        check(subject)
    model, _, _ = _objective_setup(Subject("objective", "elbo", Settings("zoo")))
    assert not model.deterministic
