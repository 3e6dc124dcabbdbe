"""The adversarial plugin: the adversarial autoencoder (``aae``) and VAE-GAN (``vae-gan``). Their
discriminators are stepped by their own optimizers only (through zoo.Trainer, resumed exactly),
the model never gets a gradient from a discriminator's loss, VAE-GAN gives the encoder and the
decoder the paper's different gradients, mistakes are one-line errors, and the recipes train from
the command line on MNIST and on a folder of colour images."""

from __future__ import annotations

import json

import helpers_random_images as random_images
import numpy as np
import pytest
import torch
from PIL import Image
from test_reliability import cli

import zoo
from zoo import in_process
from zoo.checkpoint import load_checkpoint
from zoo.conformance import parametrize_plugin_checks
from zoo_adversarial.discriminators import ImageDiscriminator, scale_gradient
from zoo_adversarial.objectives import VAEGAN, AdversarialAutoencoder

SMALL = {
    "objective:aae": {"hidden": 8},
    "objective:vae-gan": {"channels": 4},
    "encoder:conv-mnist": {"channels": 4},
    "decoder:conv-mnist": {"channels": 4},
}


@parametrize_plugin_checks("adversarial", options=SMALL)
def test_zoo_conformance(check):
    check()


def _small_model(data_shape=(1, 8, 8), latent_size=3):
    return zoo.compose(
        "conv", "conv", "standard-normal", "bernoulli", latent_size=latent_size, data_shape=data_shape,
        encoder_options={"channels": 4}, decoder_options={"channels": 4},
    )  # fmt: skip


OBJECTIVES = [("aae", {"hidden": 8}), ("vae-gan", {"channels": 4})]


@pytest.mark.parametrize(("id", "options"), OBJECTIVES)
def test_the_discriminator_loss_gives_the_model_no_gradient(id, options):
    torch.manual_seed(0)
    model = _small_model()
    objective = zoo.build_objective(id, options)[0]
    out = objective(model, torch.rand(6, 1, 8, 8))
    params = list(model.parameters())
    grads = torch.autograd.grad(out.losses["discriminator"], params, allow_unused=True, retain_graph=True)
    assert all(g is None for g in grads)
    # ... while the discriminator's loss does reach every discriminator parameter
    disc = list(objective.discriminator.parameters())
    assert all(g is not None and g.abs().sum() > 0 for g in torch.autograd.grad(out.losses["discriminator"], disc))
    assert [u.name for u in objective.updates()] == ["discriminator"]


def test_the_aae_model_loss_is_reconstruction_plus_the_weighted_generator_term():
    model = _small_model()
    x = torch.rand(6, 1, 8, 8)
    losses = {}
    for scale in (0.0, 0.5, 1.0):
        torch.manual_seed(1)
        objective = AdversarialAutoencoder(adversarial_scale=scale, hidden=8)
        torch.manual_seed(2)
        out = objective(model, x)
        losses[scale] = out
    assert losses[0.0].loss.item() == pytest.approx(losses[0.0].logs["recon"].item(), rel=1e-6)
    adversarial = losses[1.0].logs["adversarial"].item()
    assert losses[0.5].loss.item() == pytest.approx(losses[0.5].logs["recon"].item() + 0.5 * adversarial, rel=1e-6)


def test_the_aae_accepts_a_deterministic_encoder():
    class PointEncoder(zoo.Encoder):
        deterministic = True

        def __init__(self, latent_size=3, data_shape=(1, 8, 8)):
            super().__init__()
            self.latent_size = latent_size
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, latent_size))

        def forward(self, x):
            return zoo.PointMass(self.net(x))

    model = zoo.compose(PointEncoder(), "conv", "standard-normal", "bernoulli", latent_size=3, data_shape=(1, 8, 8))
    objective = AdversarialAutoencoder(hidden=8)
    assert objective.needs_density is False
    out = objective(model, torch.rand(4, 1, 8, 8))
    out.loss.backward()
    assert model.encoder.net[1].weight.grad is not None


def _vaegan_gradients(gamma):
    torch.manual_seed(0)
    model = _small_model()
    objective = VAEGAN(gamma=gamma, beta=0.0, channels=4)
    x = torch.rand(6, 1, 8, 8)
    torch.manual_seed(5)
    objective(model, x)  # builds the lazy discriminator with the same weights each time
    torch.manual_seed(6)
    out = objective(model, x)
    out.loss.backward()
    encoder = torch.cat([p.grad.flatten() for p in model.encoder.parameters()])
    decoder = torch.cat([p.grad.flatten() for p in model.decoder.parameters()])
    return encoder, decoder


def test_vae_gan_gives_the_encoder_the_same_gradient_whatever_gamma():
    # The encoder minimises L_prior + L_llike (beta=0 here): gamma weighs only the decoder's L_llike,
    # and the GAN term reaches the decoder only.
    enc_1, dec_1 = _vaegan_gradients(1.0)
    enc_10, dec_10 = _vaegan_gradients(10.0)
    assert torch.allclose(enc_1, enc_10, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(dec_1, dec_10, rtol=1e-2)


def test_scale_gradient_keeps_the_value_and_scales_the_gradient():
    t = torch.randn(5, requires_grad=True)
    out = scale_gradient(t, 0.25)
    assert torch.equal(out, t)
    out.sum().backward()
    assert torch.allclose(t.grad, torch.full((5,), 0.25))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 9, 14), (3, 1, 2)])
def test_the_image_discriminator_takes_any_shape(shape):
    disc = ImageDiscriminator(channels=4, layer=2)
    features, logits = disc(torch.rand(5, *shape))
    assert logits.shape == (5,) and features.shape[0] == 5


@pytest.mark.parametrize(
    ("id", "options", "message"),
    [
        ("aae", {"adversarial_scale": -1.0}, "adversarial_scale must be a finite number at least 0"),
        ("aae", {"hidden": 0}, "hidden must be a whole number of at least 1"),
        ("aae", {"discriminator_optimizer": "lbfgs"}, "discriminator_optimizer must be one of adam"),
        ("aae", {"discriminator_lr": 0.0}, "discriminator_lr must be a finite number above 0"),
        ("vae-gan", {"gamma": 0.0}, "gamma must be a finite number above 0"),
        ("vae-gan", {"layer": 4}, "layer must be a conv layer of the discriminator, 1 to 3"),
        ("vae-gan", {"beta": float("nan")}, "beta must be a finite number"),
    ],
)
def test_bad_options_are_one_line_errors(id, options, message):
    with pytest.raises(zoo.ZooError, match=message) as caught:
        zoo.build_objective(id, options)
    assert "\n" not in str(caught.value)


# -- through zoo.Trainer -------------------------------------------------------------------------


@pytest.fixture
def random_data():
    in_process.forget()
    zoo.register("dataset", random_images.dataset("adversarial-data"))
    yield
    in_process.forget()


def _trainer(out, id, options, epochs=2):
    torch.manual_seed(0)
    return zoo.Trainer(
        _small_model((1, random_images.SIDE, random_images.SIDE)), dataset="adversarial-data", objective=id,
        objective_options=options, out=out, device="cpu", progress=False,
        training={"epochs": epochs, "batch_size": 100},
    )  # fmt: skip


@pytest.mark.parametrize(("objective_id", "options"), OBJECTIVES)
def test_the_discriminator_is_stepped_by_its_own_optimizer_and_a_resume_is_exact(
    random_data, tmp_path, objective_id, options
):
    options = {**options, "discriminator_optimizer": "sgd", "discriminator_lr": 0.05}
    whole = _trainer(tmp_path / "whole", objective_id, options)
    history = whole.fit()
    disc = list(whole.objective.discriminator.parameters())
    in_model_optimizer = {id(p) for group in whole.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in in_model_optimizer for p in disc)
    own = whole.updates.optimizers["discriminator"]
    assert isinstance(own, torch.optim.SGD) and own.param_groups[0]["lr"] == 0.05
    assert {id(p) for p in own.param_groups[0]["params"]} == {id(p) for p in disc}
    assert "train_loss_discriminator" in history[-1] and "train_d_accuracy" in history[-1]
    payload = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    assert set(payload["updates"]) == {"discriminator"}

    _trainer(tmp_path / "half", objective_id, options, epochs=1).fit()
    resumed = zoo.Trainer.resume(tmp_path / "half", epochs=2)
    resumed.fit()

    def rows(run):
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert [r["train_loss"] for r in rows(tmp_path / "half")] == [r["train_loss"] for r in rows(tmp_path / "whole")]
    for a, b in zip(resumed.objective.discriminator.parameters(), disc):
        assert torch.equal(a, b)


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["aae-conv-mnist", "vae-gan-conv-mnist"])
def test_the_recipes_train_and_evaluate_on_mnist(data_root, tmp_path, capsys, recipe):
    run = tmp_path / "run"
    code, out = cli(
        capsys, "train", recipe, "--data-dir", str(data_root), "--max-steps", "3", "--device", "cpu",
        "--no-progress", "--out", str(run), "--set", "encoder.channels=4", "--set", "decoder.channels=4",
    )  # fmt: skip
    assert code == 0, out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(rows[-1]["test_loss"]) and "train_loss_discriminator" in rows[-1]
    code, out = cli(capsys, "eval", str(run), "--limit", "20", "--iw-samples", "3", "--no-fid", "--json")
    assert code == 0, out
    metrics, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    assert np.isfinite(metrics["test_neg_elbo"]) and np.isfinite(metrics["test_nll_iw"])


def test_vae_gan_trains_on_a_folder_of_colour_images(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (20, 12, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    run = tmp_path / "run"
    code, out = cli(
        capsys, "train", "vae-gan-conv-mnist", "--data", str(folder), "--max-steps", "2", "--device", "cpu",
        "--no-progress", "--out", str(run), "--set", "batch_size=10", "--set", "objective.channels=4",
    )  # fmt: skip
    assert code == 0, out
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["dataset"] == "files:pictures"
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    first = payload["objective"]["discriminator.convs.0.weight"]
    assert first.shape[1] == 3  # the lazy first layer took the images' three channels
    code, out = cli(capsys, "eval", str(run), "--limit", "8", "--iw-samples", "2", "--no-fid", "--json")
    assert code == 0, out
    metrics, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    assert np.isfinite(metrics["test_neg_elbo"]) and np.isfinite(metrics["test_nll_iw"])


@pytest.mark.parametrize(("id", "options"), OBJECTIVES)
def test_a_fresh_objective_takes_its_sizes_from_a_checkpoint(id, options):
    # Before its first batch the lazy first layer has no size: its state dict holds None there, and
    # a trained objective's state dict sizes it.
    fresh = zoo.build_objective(id, options)[0]
    assert any(value is None for value in fresh.state_dict().values())
    torch.manual_seed(0)
    model = _small_model()
    trained = zoo.build_objective(id, options)[0]
    x = torch.rand(4, 1, 8, 8)
    trained(model, x)
    fresh.load_state_dict(trained.state_dict())
    assert all(value is not None for value in fresh.state_dict().values())
    torch.manual_seed(1)
    expected = trained(model, x).losses["discriminator"]
    torch.manual_seed(1)
    assert torch.allclose(fresh(model, x).losses["discriminator"], expected)
