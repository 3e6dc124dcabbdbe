"""The ae plugin: deterministic conv and MLP encoders, the RAE-L2 and RAE-GP objectives (Ghosh et al.
2020) and their MNIST recipes; each trains through ``zoo train`` on MNIST and on a folder of colour
images, and ``zoo eval`` scores it by reconstruction and FID with the likelihood bounds marked n/a."""

from __future__ import annotations

import json

import helpers_user_data as user_data
import pytest
import torch
from helpers_cli import run_zoo

import zoo
from zoo.conformance import parametrize_plugin_checks
from zoo.eval_results import NO_DENSITY_NOTE
from zoo_ae.objectives import RAEGP, RAEL2, decoder_gradient_penalty, decoder_weights_l2

RECIPES = ["ae-conv-mnist", "rae-l2-conv-mnist", "rae-gp-conv-mnist"]
SMALL_NETS = {"encoder.channels": 4, "decoder.channels": 4}
SMALL = {
    "encoder:ae-conv": {"channels": 4},
    "encoder:ae-mlp": {"hidden": 16},
    **{f"recipe:{r}": SMALL_NETS for r in RECIPES},
}


@parametrize_plugin_checks("ae", options=SMALL)
def test_ae_conforms(check):
    check()


def _model(recipe="rae-l2-conv-mnist"):
    torch.manual_seed(0)
    return zoo.create(recipe, **{"encoder.channels": 4, "decoder.channels": 4})


def _images(n=5):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


# -- the components and objectives ----------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["ae-conv", "ae-mlp"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 9, 14)])
def test_the_encoders_give_a_code_for_any_image_shape(encoder, shape):
    model = zoo.compose(encoder, "conv", latent_size=5, data_shape=shape)
    q = model.encoder(torch.rand(2, *shape))
    assert isinstance(q, zoo.PointMass) and q.mean.shape == (2, 5) and model.deterministic
    assert torch.equal(q.rsample(), q.mean)


def test_a_conv_encoder_refuses_images_too_small_in_one_line():
    with pytest.raises(zoo.ZooError, match="the ae-conv encoder with downsamplings=2 takes images of at least 4x4"):
        zoo.compose("ae-conv", "conv", latent_size=4, data_shape=(1, 3, 3))


def test_rae_l2_adds_the_code_norm_and_the_decoder_weights_norm():
    model, x = _model(), _images()
    objective = RAEL2(embedding_weight=0.5, reg_weight=0.25)
    loss, logs = objective(model, x)
    z = model.encoder(x).mean
    recon = -model.likelihood(model.decoder(z)).log_prob(x)
    weights = sum(p.square().sum() for p in model.decoder.parameters() if p.dim() > 1)
    expected = recon.mean() + 0.5 * 0.5 * z.square().sum(-1).mean() + 0.25 * weights
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert torch.allclose(logs["decoder_l2"], decoder_weights_l2(model.decoder))
    assert set(logs) == {"recon", "embedding", "decoder_l2"}


def test_rae_l2_regularises_the_decoder_weights_only():
    model, x = _model(), _images()
    grads = []
    for lam in (0.0, 10.0):
        model.zero_grad()
        RAEL2(embedding_weight=0.0, reg_weight=lam)(model, x).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, before in grads[0].items():
        after, param = grads[1][name], dict(model.named_parameters())[name]
        if name.startswith("decoder.") and param.dim() > 1:
            assert torch.allclose(after - before, 10.0 * 2 * param.detach(), rtol=1e-4, atol=1e-6), name
        else:  # the encoder and the decoder's biases are left alone
            assert torch.allclose(after, before, atol=1e-6), name


def test_the_gradient_penalty_estimates_the_decoders_jacobian_norm():
    torch.manual_seed(0)
    model = zoo.compose("ae-mlp", "deep-mlp", latent_size=3, data_shape=(1, 4, 4), likelihood="bernoulli")
    z = torch.randn(2, 3, requires_grad=True)
    exact = []
    for row in z:
        jacobian = torch.autograd.functional.jacobian(lambda v: model.likelihood(model.decoder(v)).mean.flatten(), row)
        exact.append(jacobian.square().sum())
    p_x = model.likelihood(model.decoder(z))
    estimate = decoder_gradient_penalty(model, z, p_x, projections=4000)
    assert torch.allclose(estimate, torch.stack(exact), rtol=0.1)
    estimate.sum().backward()  # double backprop: the penalty's gradient reaches the decoder
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())


def test_rae_gp_trains_every_parameter_and_scores_in_eval_mode():
    model, x = _model("rae-gp-conv-mnist"), _images()
    objective = RAEGP(embedding_weight=1e-2, reg_weight=1.0)
    assert objective.cuda_graph_safe is False and objective.needs_density is False
    loss, logs = objective(model, x)
    assert logs["gradient_penalty"] > 0 and set(logs) == {"recon", "embedding", "gradient_penalty"}
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        torch.manual_seed(2)
        evaluated = objective.eval()(model, x).loss
    torch.manual_seed(2)
    assert torch.allclose(evaluated, objective(model, x).loss.detach(), rtol=1e-5)


@pytest.mark.parametrize(
    "objective, options, message",
    [
        ("rae-l2", {"embedding_weight": -1}, "embedding_weight must be a finite number >= 0"),
        ("rae-l2", {"reg_weight": float("nan")}, "reg_weight must be a finite number"),
        ("rae-gp", {"projections": 0}, "projections must be a positive integer"),
        ("rae-gp", {"reg_weight": "big"}, "reg_weight"),
        ("rae-gp", {"beta": 1.0}, "beta"),
    ],
)
def test_bad_options_are_one_line_errors(objective, options, message):
    with pytest.raises(zoo.ZooError, match=message):
        zoo.build_objective(objective, options)


def test_the_recipes_carry_their_paper():
    for recipe in RECIPES:
        r = zoo.get_recipe(recipe)
        assert r.latent_size == 16 and r.encoder == "ae-conv" and r.objective in ("ae", "rae-l2", "rae-gp")
        assert "Ghosh" in r.reference["paper"] and "ghosh2020from" in r.reference["citation"]
        assert r.reference["protocol"] and r.reference["pythae"]
    assert zoo.get_recipe("rae-l2-conv-mnist").objective_options == {"embedding_weight": 1e-4, "reg_weight": 1e-7}
    assert zoo.get_recipe("rae-gp-conv-mnist").objective_options == {"embedding_weight": 1e-4, "reg_weight": 0.5e-7}


# -- through the commands ---------------------------------------------------------------------------


def test_zoo_train_refuses_an_elbo_for_a_deterministic_encoder(tmp_path, capsys):
    code, _, err = run_zoo(capsys, "train", "ae-conv-mnist", "--set", "objective=elbo", "--out", tmp_path / "run")
    assert code != 0 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(
        "Error: objective 'elbo' needs q(z|x) to have a density, but encoder 'ae-conv' is deterministic; "
        "train it with an objective for autoencoders: "
    )
    assert {"ae", "rae-gp", "rae-l2"} <= set(line.rsplit(": ", 1)[1].split(", "))
    assert not (tmp_path / "run").exists()
    code, _, err = run_zoo(
        capsys, "train", "rae-l2-conv-mnist", "--set", "objective.embedding_weight=-2", "--out", tmp_path / "r"
    )
    assert code != 0 and "embedding_weight must be a finite number >= 0" in err and "Traceback" not in err


def _eval_json(capsys, run, *args) -> dict:
    code, out, err = run_zoo(capsys, "eval", run, "--json", "--device", "cpu", *args)
    assert code == 0, err
    return json.loads(out)


def _check_scored(result: dict) -> None:
    for key in ("test_neg_elbo", "test_nll_iw", "bits_per_dim"):
        assert result[key] is None and result[f"{key}_note"] == NO_DENSITY_NOTE
    assert result["test_recon"] is not None and result["test_mse"] > 0


@pytest.mark.parametrize("recipe", RECIPES)
def test_each_recipe_trains_and_evaluates_on_mnist(recipe, data_root, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--set", "encoder.channels=4", "--set", "decoder.channels=4", "--max-steps", "3", "--device", "cpu"]
    code, _, err = run_zoo(capsys, "train", recipe, "--data-dir", data_root, "--out", run, *args)
    assert code == 0, err
    assert "recon only: deterministic encoder" in err
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["test_loss"] == row["test_recon"] and "test_kl" not in row
    code, out, err = run_zoo(capsys, "compare", run, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["test_measure"] == "-log p(x|z)"  # not headed as a negative ELBO
    result = _eval_json(capsys, run, "--data-dir", data_root, "--limit", "40", "--no-fid")
    _check_scored(result)
    assert result["model"] == recipe and result["n_images"] == 40


@pytest.mark.slow
def test_the_recipes_train_and_score_fid_on_a_folder_of_colour_images(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "pictures"
    for split, count, seed in (("train", 60, 1), ("test", 20, 100)):
        user_data.folder(folder / split, count, size=(12, 10), seed=seed)
    for recipe in RECIPES:
        run = tmp_path / recipe
        args = ["--data", folder, "--set", "batch_size=20", "--max-steps", "2", "--device", "cpu", "--out", run]
        code, _, err = run_zoo(capsys, "train", recipe, *args, *sum((["--set", f"{k}=4"] for k in SMALL_NETS), []))
        assert code == 0, err
        assert json.loads((run / "config.json").read_text())["recipe"]["data"]["path"] == str(folder.resolve())
        result = _eval_json(capsys, run, "--out", tmp_path / f"{recipe}-eval")
        _check_scored(result)
        assert result["fid"] is not None and result["fid_images"] == 20
        assert (tmp_path / f"{recipe}-eval" / "samples.png").is_file()
