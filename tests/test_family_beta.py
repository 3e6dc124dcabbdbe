"""The disentangling VAEs of the ``beta`` plugin: the burgess-conv networks, the objectives'
maths on small cases (annealed capacity, the beta-TC decomposition, FactorVAE's discriminator and
its own optimizer), exact resumes, one-line errors, the conformance kit and CLI runs."""

from __future__ import annotations

import json
import math

import helpers_random_images as random_images
import helpers_user_data as user_data
import pytest
import torch
from conftest import DATA_ROOT, requires_data
from helpers_cli import run_zoo
from helpers_random_images import SIDE
from torch.distributions import kl_divergence

import zoo
from zoo.conformance import parametrize_plugin_checks
from zoo.interfaces import TrainingContext

SMALL = {
    "encoder:burgess-conv": {"hidden": 16},
    "decoder:burgess-conv": {"hidden": 16},
    "objective:factor-vae": {"hidden": 16, "layers": 2},
    # the kit's factor-vae options (code size 4) apply to its recipes too, so their models take 4 latents
    "recipe:factor-vae-mnist": {"latent_size": 4},
    "recipe:factor-vae-dsprites": {"latent_size": 4},
}


@parametrize_plugin_checks("beta", options=SMALL)
def test_beta_conforms(check):
    check()


def _model(latent=3, shape=(1, SIDE, SIDE), encoder="conv", decoder="conv"):
    return zoo.compose(encoder, decoder, "standard-normal", "bernoulli", latent_size=latent, data_shape=shape)


# -- burgess-conv -----------------------------------------------------------------------------


def test_burgess_conv_is_the_published_network_on_64x64():
    model = _model(10, (1, 64, 64), "burgess-conv", "burgess-conv")
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64] and all(c.kernel_size == (4, 4) for c in convs)
    assert model.encoder.head[1].in_features == 64 * 4 * 4 and model.encoder.head[1].out_features == 256
    assert model.decoder.dense[2].out_features == 1024
    x = torch.rand(2, 1, 64, 64)
    assert model.decoder(model.encoder(x).rsample()).shape == (2, 1, 64, 64)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64), (3, 27, 40), (1, 5, 3)])
def test_burgess_conv_takes_any_image_size(shape):
    model = _model(4, shape, "burgess-conv", "burgess-conv")
    x = torch.rand(3, *shape)
    assert model.decoder(model.encoder(x).rsample()).shape == (3, *shape)
    assert torch.isfinite(model.elbo(x).elbo).all()


def test_burgess_conv_refuses_flat_data_in_one_line():
    with pytest.raises(zoo.ZooError, match=r"takes images shaped \[channels, height, width\]") as caught:
        _model(4, (784,), "burgess-conv", "burgess-conv")
    assert "\n" not in str(caught.value)


# -- annealed capacity ------------------------------------------------------------------------


def test_annealed_capacity_rises_linearly_then_holds():
    objective, _ = zoo.build_objective("annealed-capacity", {"gamma": 10.0, "c_max": 20.0, "anneal_steps": 4})
    model, x = _model(), torch.rand(5, 1, SIDE, SIDE)
    seen = []
    for _ in range(6):
        seen.append(objective.capacity().item())
        objective(model, x)
    assert seen == pytest.approx([0.0, 5.0, 10.0, 15.0, 20.0, 20.0])
    objective.eval()
    objective(model, x)
    assert objective.steps.item() == 6  # evaluation does not advance the schedule
    still, _ = zoo.build_objective("annealed-capacity", {"c_max": 7.0, "anneal_steps": 0})
    assert still.capacity().item() == 7.0


def test_annealed_capacity_loss_is_recon_plus_gamma_distance_to_c():
    objective, _ = zoo.build_objective("annealed-capacity", {"gamma": 3.0, "c_max": 100.0, "anneal_steps": 10})
    objective.steps.fill_(5)  # C = 50, far above the KL of an untrained model
    model, x = _model(), torch.rand(5, 1, SIDE, SIDE)
    torch.manual_seed(0)
    loss, logs = objective.eval()(model, x)
    torch.manual_seed(0)
    terms = model.elbo(x)
    assert logs["capacity"].item() == pytest.approx(50.0)
    expected = -terms.recon.mean() + 3.0 * (terms.kl.mean() - 50.0).abs()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


# -- beta-TC ----------------------------------------------------------------------------------


def _posterior(b=6, latent=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = zoo.diagonal_gaussian(torch.randn(b, latent, generator=g), torch.randn(b, latent, generator=g) * 0.5)
    prior = torch.distributions.Independent(torch.distributions.Normal(torch.zeros(latent), torch.ones(latent)), 1)
    return q, prior


@pytest.mark.parametrize("sampling", ["mws", "mss"])
def test_beta_tc_terms_sum_to_the_monte_carlo_kl(sampling):
    from zoo_beta.objectives import tc_decomposition

    q, prior = _posterior()
    z = q.rsample()
    mi, tc, dwkl = tc_decomposition(q, prior.log_prob(z), z, dataset_size=1000, sampling=sampling)
    assert torch.allclose(mi + tc + dwkl, q.log_prob(z) - prior.log_prob(z), atol=1e-5)


def test_mws_is_the_papers_estimator_less_its_constant_log_n():
    """Chen et al. weigh every pair 1/(N B): each estimated log-density is lower by log N."""
    from zoo_beta.objectives import tc_decomposition

    q, prior = _posterior(b=5, latent=4)
    z = q.rsample()
    n, b, latent = 1000, 5, 4
    pairs = q.base_dist.log_prob(z.unsqueeze(1))
    paper_qz = torch.logsumexp(pairs.sum(-1), 1) - math.log(n * b)
    paper_prod = (torch.logsumexp(pairs, 1) - math.log(n * b)).sum(-1)
    mi, tc, dwkl = tc_decomposition(q, prior.log_prob(z), z, n, "mws")
    assert torch.allclose(mi, q.log_prob(z) - paper_qz - math.log(n), atol=1e-5)
    assert torch.allclose(tc, paper_qz - paper_prod - (latent - 1) * math.log(n), atol=1e-4)


def test_mss_weighs_the_examples_own_posterior_by_one_over_n():
    from zoo_beta.objectives import tc_decomposition

    q, prior = _posterior(b=4)
    z = q.rsample()
    pairs = q.base_dist.log_prob(z.unsqueeze(1)).sum(-1)  # [B, B]
    n = 50
    weights = torch.full((4, 4), (n - 1) / (n * 3))
    weights.fill_diagonal_(1 / n)
    log_qz = torch.log((weights * pairs.exp()).sum(1))
    mi, _, _ = tc_decomposition(q, prior.log_prob(z), z, n, "mss")
    assert torch.allclose(mi, q.log_prob(z) - log_qz, atol=1e-5)
    # With the batch as the whole data set, both estimators weigh every pair 1/B.
    same = [tc_decomposition(q, prior.log_prob(z), z, 4, s) for s in ("mws", "mss")]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*same))


def test_beta_tc_with_unit_weights_is_the_negative_elbo_and_its_kl_is_the_elbos_in_expectation():
    objective, _ = zoo.build_objective("beta-tc", {"alpha": 1.0, "beta": 1.0, "gamma": 1.0})
    model, x = _model(), torch.rand(8, 1, SIDE, SIDE)
    torch.manual_seed(1)
    loss, logs = objective(model, x)
    torch.manual_seed(1)
    q = model.encoder(x)
    z = q.rsample()
    recon = model.likelihood(model.decoder(z)).log_prob(x)
    mc_kl = q.log_prob(z) - model.prior().log_prob(z)
    assert loss.item() == pytest.approx((-recon + mc_kl).mean().item(), rel=1e-5)
    assert logs["kl"].item() == pytest.approx(mc_kl.mean().item(), rel=1e-5)
    # The Monte-Carlo KL it optimises is the analytic KL of the ELBO in expectation.
    draws = q.rsample((4000,))
    mc = (q.log_prob(draws) - model.prior().log_prob(draws)).mean(0)
    assert torch.allclose(mc, kl_divergence(q, model.prior()), atol=0.1)
    assert {"mi", "tc", "dwkl", "recon", "kl"} <= set(logs)


def test_beta_tc_reads_the_data_set_size_from_its_run():
    from zoo_beta.objectives import tc_decomposition

    objective, _ = zoo.build_objective("beta-tc", {"sampling": "mss"})
    model, x = _model(), torch.rand(8, 1, SIDE, SIDE)
    objective.context = TrainingContext(dataset_size=60000, batch_size=8, steps_per_epoch=7500, epochs=1)
    torch.manual_seed(2)
    logs = objective(model, x).logs
    torch.manual_seed(2)
    q = model.encoder(x)
    z = q.rsample()
    mi, tc, _ = tc_decomposition(q, model.prior().log_prob(z), z, 60000, "mss")
    assert logs["mi"].item() == pytest.approx(mi.mean().item(), abs=1e-5)
    assert logs["tc"].item() == pytest.approx(tc.mean().item(), abs=1e-5)


def test_beta_tc_refuses_a_posterior_that_does_not_factorise():
    from zoo_beta.objectives import tc_decomposition

    q = torch.distributions.MultivariateNormal(torch.zeros(4, 3), torch.eye(3))
    with pytest.raises(zoo.ZooError, match="factorises over the latent dimensions") as caught:
        tc_decomposition(q, torch.zeros(4), q.sample(), 100)
    assert "\n" not in str(caught.value)


# -- FactorVAE --------------------------------------------------------------------------------


def test_factor_vae_discriminator_loss_is_the_cross_entropy_of_real_and_permuted_codes():
    """The discriminator's loss (which shares the real codes' pass with the model's loss) and its
    gradient for the discriminator are those of the two cross-entropies on the codes themselves."""
    from zoo_beta.objectives import permute_dims

    objective, _ = zoo.build_objective("factor-vae", {"hidden": 16, "layers": 2}, _model())
    model, x = _model(), torch.rand(8, 1, SIDE, SIDE)
    torch.manual_seed(3)
    out = objective(model, x)
    d_params = list(objective.discriminator.parameters())
    d_grads = torch.autograd.grad(out.losses["discriminator"], d_params)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in d_grads)
    torch.manual_seed(3)  # the same draws: z, then the other half's codes, then the permutation
    z = model.encoder(x[:4]).rsample().detach()
    z_other = model.encoder(x[4:]).sample()
    real, fake = objective.discriminator(z), objective.discriminator(permute_dims(z_other))
    expected = 0.5 * (
        torch.nn.functional.cross_entropy(real, torch.zeros(4, dtype=torch.long))
        + torch.nn.functional.cross_entropy(fake, torch.ones(4, dtype=torch.long))
    )
    torch.testing.assert_close(out.losses["discriminator"], expected)
    for got, want in zip(d_grads, torch.autograd.grad(expected, d_params)):
        torch.testing.assert_close(got, want)
    layers = [m for m in objective.discriminator.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.in_features for m in layers] == [3, 16, 16] and layers[-1].out_features == 2
    (update,) = objective.updates()
    assert update.lr == 1e-4 and tuple(update.options["betas"]) == (0.5, 0.9)


def test_factor_vae_discriminator_is_the_papers_by_default():
    objective, _ = zoo.build_objective("factor-vae", {"code_size": 10})
    layers = [m for m in objective.discriminator.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [(10, 1000)] + [(1000, 1000)] * 5 + [(1000, 2)]
    assert all(m.negative_slope == 0.2 for m in objective.discriminator.modules() if hasattr(m, "negative_slope"))


def test_factor_vae_refuses_a_model_of_another_latent_size_in_one_line():
    objective, _ = zoo.build_objective("factor-vae", {"code_size": 5, "hidden": 8, "layers": 1})
    with pytest.raises(zoo.ZooError, match="leave code_size out") as caught:
        objective(_model(), torch.rand(4, 1, SIDE, SIDE))
    assert "\n" not in str(caught.value)
    with pytest.raises(zoo.ZooError, match="set objective.code_size=3") as caught:
        zoo.build_objective("factor-vae", {"code_size": 5}, _model())
    assert "\n" not in str(caught.value)
    with pytest.raises(zoo.ZooError, match="build it with its model .* or give the option code_size") as caught:
        zoo.build_objective("factor-vae")
    assert "\n" not in str(caught.value)


def test_factor_vae_discriminator_takes_the_models_latent_size(tiny_data, tmp_path):
    """Built for a model, the objective receives its latent size: no option repeats it, the record
    holds only the options given, and resizing the model resizes the discriminator."""
    objective, record = zoo.build_objective("factor-vae", {"hidden": 8, "layers": 1}, _model())
    assert objective.code_size == 3 and record["options"] == {"hidden": 8, "layers": 1}
    with pytest.raises(zoo.ZooError, match="filled in by zoo"):
        zoo.build_objective("factor-vae", {"latent_size": 4})
    trainer = _trainer(tmp_path / "run", "factor-vae", epochs=1, hidden=8, layers=1)
    trainer.fit()
    assert trainer.objective.discriminator.net[0].in_features == 3
    resumed = zoo.Trainer.resume(tmp_path / "run", epochs=2)
    assert resumed.objective.code_size == 3
    resumed.fit()


def test_factor_vae_permutes_each_dimension_on_its_own():
    from zoo_beta.objectives import permute_dims

    z = torch.arange(40.0).view(10, 4) + torch.tensor([0.0, 100.0, 200.0, 300.0])
    shuffled = permute_dims(z)
    for d in range(4):
        assert sorted(shuffled[:, d].tolist()) == z[:, d].tolist()  # each column keeps its values
    assert not torch.equal(shuffled, z)


def _trainer(out, objective, epochs=2, **options):
    torch.manual_seed(0)  # the same initial model in every run
    model = _model()
    return zoo.Trainer(
        model, dataset="beta-data", objective=objective, objective_options=options, out=out, device="cpu",
        progress=False, training={"epochs": epochs, "batch_size": 100},
    )  # fmt: skip


@pytest.fixture
def tiny_data():
    zoo.register("dataset", random_images.dataset("beta-data"))


def test_factor_vae_trains_its_discriminator_with_its_own_adam(tiny_data, tmp_path):
    trainer = _trainer(tmp_path / "run", "factor-vae", hidden=16, layers=2)

    history = trainer.fit()
    disc = trainer.objective.discriminator
    (optimizer,) = trainer.updates.optimizers.values()
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.9) and optimizer.param_groups[0]["lr"] == 1e-4
    owned = {id(p) for p in disc.parameters()}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == owned
    assert not any(id(p) in owned for g in trainer.optimizer.param_groups for p in g["params"])
    assert all(optimizer.state[p]["step"] == 8 for p in disc.parameters())  # 4 steps an epoch, 2 epochs
    assert {"train_loss_discriminator", "train_tc", "train_discriminator_accuracy"} <= set(history[-1])


def test_through_the_trainer_the_discriminator_loss_never_moves_the_model(tiny_data, tmp_path):
    """With gamma 0 the model's loss ignores the discriminator: however differently the discriminator
    is trained (its lr), the model ends with the same weights, so none of its loss reached the model."""
    runs = []
    for lr in (1e-4, 0.1):
        trainer = _trainer(tmp_path / f"lr{lr}", "factor-vae", gamma=0.0, hidden=16, layers=2, lr=lr)
        trainer.fit()
        runs.append(trainer)
    slow, fast = runs
    assert not torch.equal(slow.objective.discriminator.net[0].weight, fast.objective.discriminator.net[0].weight)
    for a, b in zip(slow.model.parameters(), fast.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("objective", "options"),
    [
        ("factor-vae", {"hidden": 16, "layers": 2}),
        ("annealed-capacity", {"anneal_steps": 6}),
        ("beta-tc", {}),
    ],
)
def test_a_resume_is_exact(tiny_data, tmp_path, objective, options):
    whole = _trainer(tmp_path / "whole", objective, **options)
    whole.fit()
    _trainer(tmp_path / "half", objective, epochs=1, **options).fit()
    resumed = zoo.Trainer.resume(tmp_path / "half", epochs=2)
    resumed.fit()

    def rows(run):
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert [r["train_loss"] for r in rows(tmp_path / "half")] == [r["train_loss"] for r in rows(tmp_path / "whole")]
    for a, b in zip(resumed.objective.state_dict().values(), whole.objective.state_dict().values()):
        assert torch.equal(a, b)
    if objective == "annealed-capacity":
        assert resumed.objective.steps.item() == 8


# -- mistakes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objective", "options", "message"),
    [
        ("beta-tc", {"sampling": "stratified"}, "sampling must be 'mws'"),
        ("beta-tc", {"beta": -1.0}, "beta must be a finite number >= 0"),
        ("beta-tc", {"alpha": float("nan")}, "alpha must be a finite number"),
        ("annealed-capacity", {"anneal_steps": -5}, "anneal_steps must be a whole number >= 0"),
        ("annealed-capacity", {"c_max": -1.0}, "c_max must be a finite number >= 0"),
        ("factor-vae", {"layers": 0}, "layers must be a whole number >= 1"),
        ("factor-vae", {"beta2": 1.0}, r"beta1 and beta2 must lie in \[0, 1\)"),
        ("factor-vae", {"lr": 0.0}, "lr must be positive"),
    ],
)
def test_bad_options_are_one_line_errors(objective, options, message):
    with pytest.raises(zoo.ZooError, match=message) as caught:
        zoo.build_objective(objective, options)
    assert "\n" not in str(caught.value)


def test_a_bad_option_on_the_command_line_is_one_line(capsys, tmp_path):
    code, out, err = run_zoo(capsys, "train", "beta-tc-vae-mnist", "--set", "objective.sampling=nope", "--out",
                             tmp_path / "run", "--max-steps", "1")  # fmt: skip
    assert code != 0 and "sampling must be 'mws'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


# -- the recipes ------------------------------------------------------------------------------


def test_every_recipe_names_its_paper():
    ids = zoo.list_models()
    ours = [
        "beta-vae-mnist", "beta-vae-dsprites", "annealed-vae-dsprites", "beta-tc-vae-mnist",
        "beta-tc-vae-dsprites", "factor-vae-mnist", "factor-vae-dsprites",
    ]  # fmt: skip
    assert set(ours) <= set(ids)
    for model_id in ours:
        recipe = zoo.get_recipe(model_id)
        assert {"paper", "citation", "protocol", "pythae"} <= set(recipe.reference)
        assert recipe.latent_size == (16 if model_id.endswith("mnist") else 10)
        assert recipe.likelihood == "bernoulli"
    assert zoo.get_recipe("beta-vae-mnist").objective_options == {"beta": 4.0}
    assert zoo.get_recipe("annealed-vae-dsprites").training.lr == 5e-4
    assert zoo.get_recipe("factor-vae-dsprites").training.batch_size == 128  # the paper's two batches of 64


@pytest.mark.parametrize("model_id", ["beta-vae-dsprites", "annealed-vae-dsprites", "factor-vae-dsprites"])
def test_dsprites_recipes_build(model_id):
    if "dsprites" not in zoo.list_components("dataset"):
        pytest.skip("the dsprites data set is not registered by any loaded plugin")
    model = zoo.create(model_id)
    assert model.encoder.latent_size == 10


@requires_data
@pytest.mark.parametrize("model_id", ["beta-vae-mnist", "beta-tc-vae-mnist", "factor-vae-mnist"])
def test_cli_trains_and_evaluates_on_mnist(capsys, tmp_path, model_id):
    run = tmp_path / "run"
    code, out, err = run_zoo(capsys, "train", model_id, "--data-dir", DATA_ROOT, "--out", run, "--max-steps", "3",
                             "--no-progress")  # fmt: skip
    assert code == 0, err
    code, out, err = run_zoo(capsys, "eval", run, "--limit", "50", "--iw-samples", "5", "--no-fid", "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert math.isfinite(metrics["test_neg_elbo"]) and math.isfinite(metrics["test_nll_iw"])


@pytest.mark.parametrize("model_id", ["beta-vae-dsprites", "annealed-vae-dsprites", "factor-vae-dsprites"])
def test_cli_trains_on_a_colour_folder(capsys, tmp_path, model_id):
    user_data.folder(tmp_path / "pictures", 24, size=(40, 40), channels=3)
    run = tmp_path / "run"
    code, out, err = run_zoo(capsys, "train", model_id, "--data", tmp_path / "pictures", "--image-size", "32",
                             "--out", run, "--max-steps", "2", "--batch-size", "8", "--no-progress")  # fmt: skip
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["data"] and (run / "metrics.jsonl").read_text().strip()
