"""Models that span components: objectives as a registered kind, components that receive each
other, models composed in Python that train like recipes, and hierarchical latents."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers_spanning import PseudoInputPrior
from torch import nn
from torch.distributions import Independent, Normal

import zoo
from zoo import plugins
from zoo.checkpoint import load_checkpoint
from zoo.cli import main
from zoo.errors import IncompatibleComponentsError, ZooError
from zoo.objectives import CIWAE, ELBO, IWAE, MIWAE, PIWAE, log_mean_exp
from zoo.trainer import Trainer

# -- objectives are a registered kind ---------------------------------------------------------


def test_builtin_objectives_are_registered():
    with plugins.using(*plugins.build(entry_points=False)):  # zoo alone, no installed plugin
        assert zoo.list_components("objective") == ["ae", "ciwae", "elbo", "iwae", "miwae", "piwae"]


def test_a_plugin_objective_trains_by_id(span, tmp_path):
    trainer = Trainer("tiny-vamp", out=tmp_path / "run", device="cpu", progress=False)
    history = trainer.fit()
    assert "train_kl" in history[0] and math.isfinite(history[0]["train_kl"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["recipe"]["objective"] == "half-elbo"
    payload = load_checkpoint(tmp_path / "run")
    assert payload["spec"]["objective"]["id"] == "half-elbo"
    assert payload["spec"]["objective"]["plugin"] == "spanning"
    # The test metrics are the same quantities whatever the objective.
    assert {"test_loss", "test_recon", "test_kl"} <= set(history[0])
    # Each parameter is stored once: the prior's encoder is the model's encoder.
    assert not any(key.startswith("prior.encoder.") for key in payload["model"])
    model = zoo.load(tmp_path / "run")
    assert model.prior.encoder is model.encoder


def test_set_objective_on_the_command_line(span, tmp_path, capsys):
    main(
        [
            "train",
            "tiny-vamp",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "r"),
            "--set",
            "objective=iwae",
            "--set",
            "objective.samples=3",
            "--no-progress",
        ]
    )
    row = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    assert "train_iw_bound" in row and math.isfinite(row["test_loss"])
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["recipe"]["objective"] == "iwae" and config["recipe"]["objective_options"] == {"samples": 3}


def test_switching_objective_drops_the_old_options():
    recipe = zoo.Recipe(
        id="x",
        encoder="a",
        decoder="b",
        prior="c",
        likelihood="d",
        dataset="mnist",
        latent_size=2,
        objective="elbo",
        objective_options={"warmup": 10},
    )
    assert recipe.with_overrides({"objective": "iwae"}).objective_options == {}
    assert recipe.with_overrides({"objective": "iwae", "objective.samples": "4"}).objective_options == {"samples": 4}
    assert recipe.with_overrides({"beta": "2"}).objective_options == {"warmup": 10, "beta": 2}


def test_objective_option_errors():
    with pytest.raises(ZooError, match="objective 'iwae' has no option 'k'"):
        zoo.build_objective("iwae", {"k": 3})
    with pytest.raises(ZooError, match="samples"):
        zoo.build_objective("iwae", {"samples": 0})
    with pytest.raises(ZooError, match="unknown objective 'iwea'; did you mean 'iwae'"):
        zoo.build_objective("iwea")


# -- the IWAE family on known answers --------------------------------------------------------


@pytest.fixture
def mog_model():
    """A small model whose KL has no closed form (mixture prior), so every bound is Monte Carlo."""
    torch.manual_seed(0)
    return zoo.compose(
        "conv-mnist",
        "conv-mnist",
        "mixture-of-gaussians",
        latent_size=3,
        encoder_options={"channels": 4},
        decoder_options={"channels": 4},
        prior_options={"components": 2},
    )


def test_iwae_loss_is_minus_the_mean_iw_bound_on_the_same_samples(mog_model):
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(5)
    loss, logs = IWAE(samples=7)(mog_model, x)
    torch.manual_seed(5)
    bound = mog_model.iwae(x, samples=7)
    assert torch.allclose(loss, -bound.mean(), atol=1e-5)
    assert torch.allclose(logs["iw_bound"], bound.mean(), atol=1e-5)


def test_iwae_at_one_sample_is_the_elbo(mog_model):
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(5)
    iwae, _ = IWAE(samples=1)(mog_model, x)
    torch.manual_seed(5)
    elbo, _ = ELBO()(mog_model, x)
    assert torch.allclose(iwae, elbo, atol=1e-4)


def test_miwae_piwae_ciwae_values(mog_model):
    x = torch.rand(3, 1, 28, 28)
    torch.manual_seed(2)
    log_w = torch.cat(list(mog_model.iw_log_weights(x, 12)), 0)
    torch.manual_seed(2)
    miwae, _ = MIWAE(estimates=3, samples=4)(mog_model, x)
    assert torch.allclose(miwae, -log_mean_exp(log_w.view(3, 4, -1), 1).mean(), atol=1e-4)
    torch.manual_seed(2)
    ciwae, _ = CIWAE(samples=12, beta=0.25)(mog_model, x)
    expected = 0.25 * log_w.mean(0) + 0.75 * log_mean_exp(log_w, 0)
    assert torch.allclose(ciwae, -expected.mean(), atol=1e-4)
    torch.manual_seed(2)
    piwae, logs = PIWAE(estimates=3, samples=4)(mog_model, x)
    assert torch.allclose(piwae, -log_mean_exp(log_w, 0).mean(), atol=1e-4)  # the value is the IWAE bound


def test_piwae_sends_each_bound_to_its_side(mog_model):
    """The decoder gets IWAE(M x K)'s gradient and the encoder MIWAE(M, K)'s, from the same draws."""
    x = torch.rand(3, 1, 28, 28)

    def grads(objective):
        mog_model.zero_grad()
        torch.manual_seed(4)
        objective(mog_model, x).loss.backward()
        return (
            [p.grad.clone() for p in mog_model.encoder.parameters()],
            [p.grad.clone() for p in mog_model.decoder.parameters()],
        )

    enc_p, dec_p = grads(PIWAE(estimates=2, samples=3))
    enc_m, _ = grads(MIWAE(estimates=2, samples=3))
    _, dec_i = grads(IWAE(samples=6))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(enc_p, enc_m))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(dec_p, dec_i))


def test_dreg_gradients_are_unbiased():
    """DReG and the plain IWAE estimator agree in expectation for the encoder, and exactly for the
    decoder (the same weights on the same draws); DReG's variance is smaller."""
    torch.manual_seed(0)
    model = _linear_gaussian_model(one_layer=True)
    x = torch.randn(2, 3)

    def encoder_grads(dreg: bool, seed: int):
        model.zero_grad()
        torch.manual_seed(seed)
        IWAE(samples=8, dreg=dreg)(model, x).loss.backward()
        enc = torch.cat([p.grad.flatten() for p in model.encoder.parameters()])
        dec = torch.cat([p.grad.flatten() for p in model.decoder.parameters()])
        return enc, dec

    plain, dreg = [], []
    for seed in range(1500):
        e1, d1 = encoder_grads(False, seed)
        e2, d2 = encoder_grads(True, seed)
        assert torch.allclose(d1, d2, atol=1e-5)
        plain.append(e1)
        dreg.append(e2)
    plain, dreg = torch.stack(plain), torch.stack(dreg)
    stderr = torch.sqrt(plain.var(0) / len(plain) + dreg.var(0) / len(dreg))
    assert ((plain.mean(0) - dreg.mean(0)).abs() < 4 * stderr + 1e-4).all()
    assert dreg.var(0).sum() < plain.var(0).sum()


def test_elbo_warmup_and_free_bits(mog_model):
    model = zoo.compose(
        "conv-mnist", "conv-mnist", latent_size=3, encoder_options={"channels": 4}, decoder_options={"channels": 4}
    )
    x = torch.rand(4, 1, 28, 28)
    objective = ELBO(beta=2.0, warmup=4)
    weights = []
    for _ in range(6):
        weights.append(float(objective(model, x).logs["kl_weight"]))
    assert weights == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.0])
    objective.eval()
    objective(model, x)
    assert int(objective.steps) == 6  # evaluation does not count
    # Free bits: the KL of each dimension is floored at the given nats (batch mean).
    torch.manual_seed(1)
    loss, logs = ELBO(free_bits=50.0)(model, x)
    torch.manual_seed(1)
    terms = model.elbo(x)
    assert torch.allclose(loss, -terms.recon.mean() + 3 * 50.0, atol=1e-4)
    with pytest.raises(ZooError, match="free_bits needs"):
        ELBO(free_bits=1.0)(mog_model, x)
    for bad in ({"beta": -1}, {"warmup": -2}, {"warmup": 1.5}, {"free_bits": float("nan")}):
        with pytest.raises(ZooError):
            ELBO(**bad)


def test_warmup_resumes_exactly(span, tmp_path):
    base = dict(device="cpu", progress=False, overrides={"objective": "elbo", "objective.warmup": 6})
    Trainer("tiny-vamp", out=tmp_path / "a", **{**base, "overrides": {**base["overrides"], "epochs": 2}}).fit()
    Trainer("tiny-vamp", out=tmp_path / "b", **{**base, "overrides": {**base["overrides"], "epochs": 1}}).fit()
    Trainer.resume(tmp_path / "b", epochs=2, progress=False).fit()
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert int(a["objective"]["steps"]) == int(b["objective"]["steps"]) == 8
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


# -- components that receive each other --------------------------------------------------------


def test_a_prior_receives_the_encoder(span):
    model = zoo.compose(
        "conv-mnist",
        "conv-mnist",
        "pseudo-vamp",
        latent_size=3,
        encoder_options={"channels": 4},
        decoder_options={"channels": 4},
    )
    assert model.prior.encoder is model.encoder
    names = dict(model.named_parameters())
    assert "prior.pseudo" in names and not any(n.startswith("prior.encoder") for n in names)
    assert not any(k.startswith("prior.encoder") for k in model.state_dict())
    loss = -model.prior().log_prob(torch.randn(5, 3)).sum()
    loss.backward()
    assert model.prior.pseudo.grad is not None and model.encoder.net[0].weight.grad is not None


def test_a_ready_made_component_holding_another_is_stored_once(span, tmp_path):
    from zoo.checkpoint import save_checkpoint
    from zoo_aevb.components import ConvEncoder

    encoder = ConvEncoder(3, channels=4)
    model = zoo.compose(
        encoder, "conv-mnist", PseudoInputPrior(encoder, 3, (1, 28, 28)), latent_size=3, decoder_options={"channels": 4}
    )
    assert model.prior.encoder is model.encoder
    assert not any(k.startswith("prior.encoder") for k in model.state_dict())
    assert model.spec["components"]["prior"]["id"] == "pseudo-vamp"
    save_checkpoint(tmp_path / "m.pt", {"spec": model.spec, "model": model.state_dict()})
    loaded = zoo.load(tmp_path / "m.pt")
    assert torch.equal(loaded.prior.pseudo, model.prior.pseudo)


def test_injected_components_are_not_options(span):
    with pytest.raises(ZooError, match="'encoder' is the model's own component"):
        zoo.compose("conv-mnist", "conv-mnist", "pseudo-vamp", latent_size=3, prior_options={"encoder": 3})
    with pytest.raises(ZooError, match="filled in by zoo"):
        zoo.compose("conv-mnist", "conv-mnist", latent_size=3, encoder_options={"latent_size": 3})


def test_a_cycle_is_a_clear_error(span):
    with pytest.raises(IncompatibleComponentsError, match=r"cycle: .*encoder 'asking' -> prior 'pseudo-vamp'"):
        zoo.compose("asking", "conv-mnist", "pseudo-vamp", latent_size=3)


def test_zoo_info_shows_every_option(span, capsys):
    main(["info", "tiny-vamp"])
    out = capsys.readouterr().out
    assert "pseudo_inputs: int  (default 3)" in out
    assert "(receives the model's encoder)" in out
    assert "channels: int = 4  (default 16)" in out
    assert "objective:   half-elbo" in out and "weight: float  (default 0.5)" in out
    assert out.endswith("\n")
    main(["info", "iwae"])
    out = capsys.readouterr().out
    assert "samples: int  (default 5)" in out and "dreg: bool  (default False)" in out
    main(["list", "--kind", "objective"])
    assert "half-elbo" in capsys.readouterr().out


# -- models composed in Python -------------------------------------------------------------------


def test_composed_objects_are_recorded_by_id_and_rebuilt(span, tmp_path):
    from zoo_aevb.components import BernoulliLikelihood, ConvDecoder, ConvEncoder, StandardNormalPrior

    torch.manual_seed(0)
    model = zoo.compose(
        ConvEncoder(3, channels=4),
        ConvDecoder(3, channels=4),
        StandardNormalPrior(3),
        BernoulliLikelihood(),
        latent_size=3,
    )
    assert model.spec["components"]["encoder"]["id"] == "conv-mnist"
    assert model.spec["components"]["encoder"]["options"] == {"channels": 4}
    trainer = Trainer(
        model,
        dataset="spanning-tiny",
        training=zoo.Training(epochs=2, batch_size=50),
        objective=IWAE(samples=2),
        out=tmp_path / "a",
        device="cpu",
        progress=False,
    )
    assert trainer.model is model
    trainer.fit()
    loaded = zoo.load(tmp_path / "a")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    # Resume is bit-exact: one epoch, resumed to two, equals two uninterrupted.
    torch.manual_seed(0)
    again = zoo.compose(
        ConvEncoder(3, channels=4),
        ConvDecoder(3, channels=4),
        StandardNormalPrior(3),
        BernoulliLikelihood(),
        latent_size=3,
    )
    Trainer(
        again,
        dataset="spanning-tiny",
        training={"epochs": 1, "batch_size": 50},
        objective="iwae",
        objective_options={"samples": 2},
        out=tmp_path / "b",
        device="cpu",
        progress=False,
    ).fit()
    Trainer.resume(tmp_path / "b", epochs=2, progress=False).fit()
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads((tmp_path / "b" / "config.json").read_text())["recipe"]["objective"] == "iwae"


def test_an_unrebuildable_model_fails_when_the_run_starts(span, tmp_path):
    class Private(zoo.Encoder):
        def __init__(self):
            super().__init__()
            self.latent_size = 3
            self.net = nn.Linear(784, 6)

        def forward(self, x):
            mean, log_var = self.net(x.flatten(1)).chunk(2, -1)
            return Independent(Normal(mean, torch.exp(0.5 * log_var)), 1)

    model = zoo.compose(Private(), "conv-mnist", latent_size=3)
    with pytest.raises(
        ZooError, match=r"cannot be written down by id.*encoder Private: its class .* is not registered"
    ):
        Trainer(model, dataset="spanning-tiny", out=tmp_path / "x", device="cpu")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ZooError, match="needs dataset="):
        Trainer(zoo.compose("conv-mnist", "conv-mnist", latent_size=3), out=tmp_path / "y")


# -- errors come before anything is created ------------------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        "prior.foo=3",
        "encoder.channels=1.5",
        "encoder.channels=0",
        "objective.samples=2",
        "objective=nosuch",
        "prior=nosuch",
        "beta=-1",
    ],
)
def test_option_errors_leave_no_run_directory(span, tmp_path, capsys, setting):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        main(["train", "tiny-vamp", "--device", "cpu", "--out", str(out), "--set", setting])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err
    assert "training" not in err
    assert not out.exists()


# -- hierarchical latents ------------------------------------------------------------------------


class LinearChainEncoder(zoo.Encoder):
    """The exact posterior of the linear-Gaussian two-layer model: q(z1|x) q(z2|z1) = p(z1|x) p(z2|z1)."""

    def __init__(self, gen, one_layer=False):
        super().__init__()
        self.latent_size = 1 if one_layer else 3
        self.gen = [gen]  # not a submodule: the test sets its parameters
        self.one_layer = one_layer
        # learnable parameters so gradient tests have something to differentiate
        self.shift = nn.Parameter(torch.full((self.latent_size,), 0.3 if one_layer else 0.0))

    def forward(self, x):
        g = self.gen[0]
        if self.one_layer:
            mean, cov = g.posterior_z(x)
            return Independent(Normal(mean + self.shift, cov.diagonal().sqrt() * (1 + self.shift.abs())), 1)
        mean1, cov1 = g.posterior_z1(x)
        q1 = torch.distributions.MultivariateNormal(mean1 + self.shift[:2], covariance_matrix=cov1)

        def q2(parts):
            mean2, var2 = g.z2_given_z1(parts["z1"])
            return Independent(Normal(mean2 + self.shift[2:], var2.sqrt().expand_as(mean2)), 1)

        return zoo.Chain({"z1": 2, "z2": 1}, [("z1", lambda parts: q1), ("z2", q2)])


class LinearGaussian(nn.Module):
    """p(z2) = N(0, 1); p(z1|z2) = N(A z2, s1^2 I); p(x|z1) = N(B z1, s^2 I); x in R^3, z1 in R^2.

    log p(x) is a Gaussian's, and the exact posterior factorises as p(z1|x) p(z2|z1)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.A = torch.randn(2, 1, generator=g)
        self.B = torch.randn(3, 2, generator=g)
        self.s1, self.s = 0.7, 0.5

    def cov_z1(self):
        return self.A @ self.A.T + self.s1**2 * torch.eye(2)

    def marginal_x(self):
        return torch.distributions.MultivariateNormal(
            torch.zeros(3), self.B @ self.cov_z1() @ self.B.T + self.s**2 * torch.eye(3)
        )

    def posterior_z1(self, x):
        prec = torch.linalg.inv(self.cov_z1()) + self.B.T @ self.B / self.s**2
        cov = torch.linalg.inv(prec)
        return x @ (cov @ self.B.T / self.s**2).T, cov

    def z2_given_z1(self, z1):
        # z2 | z1 is Gaussian with precision 1 + A^T A / s1^2
        var = 1.0 / (1.0 + (self.A.T @ self.A).item() / self.s1**2)
        mean = var * (z1 @ self.A) / self.s1**2
        return mean, torch.tensor(var)


class LinearChainPrior(zoo.Prior):
    def __init__(self, gen):
        super().__init__()
        self.latent_size = 3
        self.gen = [gen]
        self.register_buffer("zero", torch.zeros(1))

    def forward(self):
        g = self.gen[0]
        top = Independent(Normal(self.zero, torch.ones_like(self.zero)), 1)
        return zoo.Chain(
            {"z1": 2, "z2": 1},
            [
                ("z2", lambda parts: top),
                ("z1", lambda parts: Independent(Normal(parts["z2"] @ g.A.T, torch.full((2,), g.s1)), 1)),
            ],
        )


class LinearDecoder(zoo.Decoder):
    def __init__(self, gen, one_layer=False):
        super().__init__()
        self.latent_size = 1 if one_layer else 3
        self.output_shape = (3,)
        self.gen = [gen]
        self.one_layer = one_layer
        if one_layer:
            self.weight = nn.Parameter((gen.B @ gen.A).clone())

    def decode(self, z):
        return z @ self.weight.T if self.one_layer else z[:, :2] @ self.gen[0].B.T


class GaussianLik(zoo.Likelihood):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, params):
        return Independent(Normal(params, self.scale), 1)


def _linear_gaussian_model(one_layer=False):
    gen = LinearGaussian()
    if one_layer:
        # One latent: x = (B A) z + noise with covariance B (s1^2) B^T + s^2 I is not diagonal, so
        # use the one-layer model p(z) = N(0, 1), p(x|z) = N(BA z, s^2 I) with q near its posterior.
        from zoo_aevb.components import StandardNormalPrior

        gen.posterior_z = lambda x: _posterior_one(gen, x)
        return zoo.compose(
            LinearChainEncoder(gen, one_layer=True),
            LinearDecoder(gen, one_layer=True),
            StandardNormalPrior(1),
            GaussianLik(gen.s),
            latent_size=1,
            data_shape=(3,),
        )
    return zoo.compose(
        LinearChainEncoder(gen),
        LinearDecoder(gen),
        LinearChainPrior(gen),
        GaussianLik(gen.s),
        latent_size=3,
        data_shape=(3,),
    )


def _posterior_one(gen, x):
    w = gen.B @ gen.A  # [3, 1]
    prec = 1.0 + (w.T @ w) / gen.s**2
    cov = torch.linalg.inv(prec)
    return x @ (cov @ w.T / gen.s**2).T, cov


def test_two_layer_linear_gaussian_matches_the_exact_log_likelihood():
    """With q the exact posterior, every importance weight equals p(x): the IW estimate and the
    ELBO both give log p(x) exactly, through Chain's rsample and log_prob alone."""
    torch.manual_seed(0)
    model = _linear_gaussian_model()
    gen = model.decoder.gen[0]
    x = gen.marginal_x().sample((6,))
    exact = gen.marginal_x().log_prob(x)
    with torch.no_grad():
        iw = model.iwae(x, samples=64)
        elbo = model.elbo(x).elbo
    assert torch.allclose(iw, exact, atol=1e-4)
    assert torch.allclose(elbo, exact, atol=1e-4)


def test_two_layer_burda_model_iw_bound_above_elbo(mnist_test_batch):
    torch.manual_seed(0)
    model = zoo.create("iwae-burda2-mnist")
    x = torch.bernoulli(mnist_test_batch[:32], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x).elbo for _ in range(20)]).mean()
        iw = model.iwae(x, samples=50).mean()
    assert iw >= elbo
    assert isinstance(model.encoder(x), zoo.Chain) and isinstance(model.prior(), zoo.Chain)
    assert model.sample(4).shape == (4, 1, 28, 28)


def test_two_layer_model_trains_with_elbo_and_iwae_and_is_scored(span, tmp_path):
    """Burda's two-layer model, shrunk, through the same trainer and evaluator as every model."""
    from zoo.evaluate import evaluate

    small = {
        "encoder.hidden": 8,
        "decoder.hidden": 8,
        "prior.hidden": 8,
        "epochs": 1,
        "batch_size": 50,
        "dataset": "spanning-tiny",
    }
    for objective in ("elbo", "iwae"):
        history = Trainer(
            "iwae-burda2-mnist",
            overrides={**small, "objective": objective},
            out=tmp_path / objective,
            device="cpu",
            progress=False,
        ).fit()
        assert math.isfinite(history[-1]["test_loss"])
        result = evaluate(tmp_path / objective, iw_samples=20, device="cpu", fid=False, limit=20)
        assert result["test_nll_iw"] <= result["test_neg_elbo"] + 0.5
        assert zoo.load(tmp_path / objective).latent_size == 150


def test_a_run_without_its_plugin_names_every_missing_part(span, tmp_path, capsys):
    Trainer("tiny-vamp", out=tmp_path / "run", device="cpu", progress=False).fit()
    spec = load_checkpoint(tmp_path / "run")["spec"]
    for record in (spec["components"]["prior"], spec["objective"]):
        record["distribution"], record["version"] = "zoo-vamp-extras", "1.2"
    from zoo.checkpoint import save_checkpoint

    payload = load_checkpoint(tmp_path / "run")
    payload["spec"] = spec
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", payload)
    capsys.readouterr()
    # The same run, with the plugin that provided the prior and the objective gone.
    registry, pm = plugins.build()
    registry.entries["dataset"]["spanning-tiny"] = span.entries["dataset"]["spanning-tiny"]
    with plugins.using(registry, pm):
        needles = (
            "prior 'pseudo-vamp' (plugin 'spanning', package 'zoo-vamp-extras' 1.2: pip install zoo-vamp-extras)",
            "objective 'half-elbo' (plugin 'spanning'",
        )
        for args in (
            ["train", "--resume", str(tmp_path / "run")],
            ["eval", str(tmp_path / "run"), "--no-fid"],
            ["sample", str(tmp_path / "run"), "--out", str(tmp_path / "s.png")],
        ):
            with pytest.raises(SystemExit):
                main(args)
            err = capsys.readouterr().err
            assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err
            assert needles[0] in err, err
            if args[0] == "train":
                assert needles[1] in err
        with pytest.raises(ZooError, match="pseudo-vamp"):
            zoo.load(tmp_path / "run")
