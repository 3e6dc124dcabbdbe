"""The vq plugin: VQ-VAE (van den Oord et al. 2017) and its gated PixelCNN prior over the code indices."""

from __future__ import annotations

import math

import helpers_random_images as random_images
import pytest
import torch
from conftest import requires_data

import zoo
from zoo.conformance import parametrize_plugin_checks
from zoo.distributions import NoDensityError
from zoo.objectives import take_aux_losses
from zoo_vq.pixelcnn import PixelCNNPrior

SMALL = {
    "encoder:vq-conv": {"codebook_size": 8, "channels": 8, "res_channels": 4, "res_blocks": 1},
    "decoder:vq-conv": {"channels": 8, "res_channels": 4, "res_blocks": 1},
    "recipe:vq-vae-mnist": {
        "encoder.channels": 8,
        "decoder.channels": 8,
        "encoder.res_channels": 4,
        "decoder.res_channels": 4,
    },
    "recipe:vq-vae-cifar10": {
        "encoder.channels": 8,
        "decoder.channels": 8,
        "encoder.res_channels": 4,
        "decoder.res_channels": 4,
    },
}


@parametrize_plugin_checks("vq", options=SMALL)
def test_vq_conforms(check):
    check()


# -- the quantiser ---------------------------------------------------------------------------------


def small_encoder(**options):
    from zoo_vq.components import VQEncoder

    torch.manual_seed(0)
    settings = {"codebook_size": 8, "channels": 8, "res_channels": 4, "res_blocks": 1, **options}
    return VQEncoder(4 * 4 * 4, (1, 28, 28), **settings)  # a 4x4 grid of 4-vectors


def test_each_vector_is_replaced_by_its_nearest_codebook_vector():
    encoder = small_encoder().eval()  # a training pass would first set the codebook from its batch
    x = torch.rand(3, 1, 28, 28)
    h = encoder.net(x)  # [3, 4, 4, 4]
    vectors = h.permute(0, 2, 3, 1).reshape(-1, 4)
    nearest = torch.cdist(vectors, encoder.codebook).argmin(1)
    assert torch.equal(encoder.indices(x).flatten(), nearest)
    z = encoder(x).rsample()
    expected = encoder.codebook[nearest].view(3, 4, 4, 4).permute(0, 3, 1, 2).flatten(1)
    assert torch.allclose(z, expected, atol=1e-6)
    assert encoder.grid == (4, 4, 4) and encoder.deterministic
    assert torch.allclose(encoder.embed(encoder.indices(x)), z, atol=1e-6)  # the prior's round trip
    assert torch.equal(encoder.indices_of_codes(z), encoder.indices(x))


def test_straight_through_gradient_and_the_two_losses():
    encoder = small_encoder(beta=0.5)
    encoder.train()
    x = torch.rand(3, 1, 28, 28)
    q = encoder(x)
    losses = take_aux_losses(encoder)
    h = encoder.net(x).detach()
    e = q.mean.detach().view(3, 4, 4, 4)
    per_image = (h - e).square().flatten(1).sum(1).mean()
    assert set(losses) == {"codebook", "commitment"}
    assert torch.allclose(losses["codebook"], per_image, atol=1e-5)
    assert torch.allclose(losses["commitment"], 0.5 * per_image, atol=1e-5)
    # The decoder's gradient reaches the encoder's network through the quantisation, not the codebook.
    q.rsample().sum().backward()
    assert encoder.net[0].weight.grad is not None and encoder.net[0].weight.grad.abs().sum() > 0
    assert encoder.quantizer.codebook.grad is None
    # Only the codebook loss moves the codebook.
    losses["codebook"].backward()
    assert encoder.quantizer.codebook.grad.abs().sum() > 0
    encoder.eval()
    encoder(x)
    assert take_aux_losses(encoder) == {}  # evaluation adds nothing


def test_the_first_training_pass_starts_the_codebook_at_vectors_of_its_batch():
    encoder = small_encoder()
    x = torch.rand(8, 1, 28, 28)
    encoder.eval()
    encoder(x)
    assert not bool(encoder.quantizer.initialised)  # evaluation leaves it alone
    encoder.train()
    encoder(x)
    assert bool(encoder.quantizer.initialised)
    h = encoder.net(x).detach().permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.cdist(encoder.codebook.detach(), h).min(1).values.max() < 1e-5  # each entry is one of them
    kept = encoder.codebook.detach().clone()
    encoder(torch.rand(8, 1, 28, 28))
    assert torch.equal(kept, encoder.codebook.detach())  # only once
    assert "quantizer.initialised" in encoder.state_dict()  # a reloaded model is not initialised again


def test_ema_codebook_moves_towards_its_assigned_vectors_in_place():
    encoder = small_encoder(ema=True, decay=0.5)
    assert "quantizer.codebook" in dict(encoder.named_buffers())
    assert "quantizer.codebook" not in dict(encoder.named_parameters())
    x = torch.rand(16, 1, 28, 28)
    before = encoder.codebook.clone()
    storage = encoder.codebook.data_ptr()
    encoder.train()
    encoder(x)
    assert set(take_aux_losses(encoder)) == {"commitment"}
    assert not torch.equal(before, encoder.codebook) and encoder.codebook.data_ptr() == storage
    # With decay 0.5 an entry's running sum and count move halfway to what it took in this batch.
    h = encoder.net(x).detach().permute(0, 2, 3, 1).reshape(-1, 4)
    quantizer = encoder.quantizer
    sums, counts = quantizer.vector_sum.clone(), quantizer.cluster_size.clone()
    used = quantizer.nearest(h)
    encoder(x)
    taken = torch.zeros(8, 4).index_add_(0, used, h)
    assert torch.allclose(quantizer.vector_sum, 0.5 * sums + 0.5 * taken, atol=1e-5)
    assert torch.allclose(quantizer.cluster_size, 0.5 * counts + 0.5 * torch.bincount(used, minlength=8), atol=1e-5)
    encoder.eval()
    frozen = encoder.codebook.clone()
    encoder(x)
    assert torch.equal(frozen, encoder.codebook)  # eval mode never updates it


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 9, 14), (1, 28, 20)])
def test_the_decoder_mirrors_the_encoder_on_any_image_shape(shape):
    model = zoo.compose(
        "vq-conv",
        "vq-conv",
        likelihood="bernoulli",
        latent_size=2 * math.prod(grid(shape)),
        data_shape=shape,
        encoder_options={"codebook_size": 8, "channels": 8, "res_channels": 4},
        decoder_options={"channels": 8, "res_channels": 4},
    )
    x = torch.rand(2, *shape)
    assert model.decoder(model.encoder(x).rsample()).shape == (2, *shape)
    assert model.encoder.grid == (2, *grid(shape))


def grid(shape, downsamplings=3):
    _, h, w = shape
    for _ in range(downsamplings):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def test_mistakes_are_one_line_errors():
    zoo.register("dataset", "random-8x8", random_images.dataset("random-8x8"))
    with pytest.raises(zoo.ZooError, match=r"latent_size \(20\) must be a multiple of the 4x4 code grid's 16"):
        zoo.compose("vq-conv", "vq-conv", latent_size=20)
    with pytest.raises(zoo.ZooError, match="codebook_size must be an integer of at least 2"):
        zoo.compose("vq-conv", "vq-conv", latent_size=16, encoder_options={"codebook_size": 1})
    with pytest.raises(zoo.ZooError, match="decay must lie strictly between 0 and 1"):
        zoo.compose("vq-conv", "vq-conv", latent_size=16, encoder_options={"ema": True, "decay": 1.5})
    with pytest.raises(zoo.ZooError, match="takes images shaped"):
        zoo.compose("vq-conv", "vq-conv", latent_size=16, data_shape=(784,))
    encoder = small_encoder()
    with pytest.raises(zoo.ZooError, match=r"code indices must be shaped \[B, 4, 4\]"):
        encoder.embed(torch.zeros(2, 3, 3, dtype=torch.long))
    with pytest.raises(zoo.ZooError, match=r"code indices must be integers in \[0, 8\)"):
        encoder.embed(torch.full((2, 4, 4), 8))
    with pytest.raises(zoo.ZooError, match="prior 'pixelcnn' must be composed with encoder 'vq-conv'"):
        zoo.compose("conv-mnist", "conv-mnist", "pixelcnn", latent_size=16)
    with pytest.raises(zoo.ZooError, match="pixelcnn prior models a vector-quantised encoder"):
        PixelCNNPrior(zoo.compose("conv-mnist", "conv-mnist", latent_size=16).encoder, 16)
    with pytest.raises(zoo.ZooError, match="objective 'elbo' needs|density|deterministic"):
        zoo.Trainer("vq-vae-mnist", overrides={"objective": "elbo", **TINY_RECIPE}, out=None, device="cpu")


# -- the PixelCNN prior ---------------------------------------------------------------------------


def small_vq_model(**sampler):
    torch.manual_seed(0)
    return zoo.compose(
        "vq-conv",
        "vq-conv",
        "pixelcnn",
        "bernoulli",
        latent_size=4 * 16,
        encoder_options={"codebook_size": 8, "channels": 8, "res_channels": 4, "res_blocks": 1},
        decoder_options={"channels": 8, "res_channels": 4, "res_blocks": 1},
        prior_options={"channels": 16, "layers": 3, **sampler},
    )


def test_the_pixelcnn_is_causal_in_raster_order():
    model = small_vq_model()
    net = model.prior.net
    base = torch.randint(0, 8, (1, 4, 4))
    for position in range(16):
        changed = base.clone()
        changed.view(-1)[position] = (changed.view(-1)[position] + 1) % 8
        moved = (net(base) - net(changed)).abs().sum(1)[0].flatten() > 1e-6
        assert not moved[: position + 1].any(), f"logits at or before {position} depend on index {position}"


def test_the_pixelcnn_is_the_models_prior_over_its_own_codebook():
    model = small_vq_model()
    prior = model.prior
    assert isinstance(prior, zoo.Sampler) and prior.encoder is model.encoder
    assert not prior.has_density
    assert not any(k.startswith("prior.encoder.") for k in model.state_dict())
    z = prior.sample(5)
    assert z.shape == (5, 64)
    indices = model.encoder.indices_of_codes(z)
    assert torch.allclose(model.encoder.embed(indices), z)  # every sample is a grid of codebook vectors
    assert model.sample(2).shape == (2, 1, 28, 28)
    with pytest.raises(NoDensityError, match="pmf over grids of code indices"):
        prior.log_prob(z)
    assert prior.log_pmf(indices).shape == (5,) and (prior.log_pmf(indices) <= 0).all()


def test_fit_learns_the_distribution_of_the_codes():
    model = small_vq_model()
    encoder = model.encoder
    # Codes with a strong structure: every grid is one of two patterns.
    patterns = torch.stack([torch.arange(16).view(4, 4) % 8, (torch.arange(16).view(4, 4) * 3) % 8])
    indices = patterns[torch.randint(0, 2, (256,))]
    codes = encoder.embed(indices).detach()
    before = -model.prior.log_pmf(indices).mean().item()
    report = model.prior.fit(codes, epochs=40, batch_size=64, lr=3e-3)
    assert report["nll"] < 0.1 * before and report["nll"] < 1.0  # log 2 = 0.69 nats per grid at best
    assert report["bits_per_index"] == pytest.approx(report["nll"] / 16 / math.log(2))
    drawn = model.prior.sample_indices(20)
    assert sum(bool((d == p).all()) for d in drawn for p in patterns) >= 18
    with pytest.raises(zoo.ZooError, match="pixelcnn fit: epochs must be a positive integer"):
        model.prior.fit(codes, epochs=0)
    lines = []
    model.prior.fit(codes, epochs=2, seed=0, log=lines.append)  # what zoo fit-prior passes
    assert len(lines) == 2 and lines[0].startswith("pixelcnn epoch 1/2")
    with pytest.raises(zoo.ZooError, match="kernel must be odd"):
        small_vq_model(kernel=4)


def test_fit_leaves_the_autoencoder_alone():
    model = small_vq_model().eval()
    codes = model.encoder(torch.rand(32, 1, 28, 28)).mean.detach()
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("prior.")}
    model.prior.fit(codes, epochs=1, batch_size=16)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


# -- training with any objective -------------------------------------------------------------------

TINY_RECIPE = {
    "encoder.codebook_size": 16,
    "encoder.channels": 8,
    "encoder.res_channels": 4,
    "decoder.channels": 8,
    "decoder.res_channels": 4,
    "dataset": "random-8x8",
    "latent_size": 4,
    "batch_size": 50,
}


def test_the_recipe_trains_its_codebook_and_reloads(tmp_path):
    zoo.register("dataset", "random-8x8", random_images.dataset("random-8x8"))
    torch.manual_seed(0)
    assert zoo.get_recipe("vq-vae-mnist").encoder_options["ema"] is True
    trainer = zoo.Trainer(
        "vq-vae-mnist",
        overrides={**TINY_RECIPE, "epochs": 2, "encoder.ema": False},
        out=tmp_path / "run",
        device="cpu",
        progress=False,
    )
    start = trainer.model.encoder.codebook.detach().clone()
    history = trainer.fit()
    assert {"train_recon", "train_aux_codebook", "train_aux_commitment"} <= set(history[0])
    assert all(math.isfinite(v) for row in history for v in row.values() if isinstance(v, float))
    model = zoo.load(tmp_path / "run")
    assert not torch.equal(start, model.encoder.codebook)
    assert model.encoder.grid == (4, 1, 1)


@requires_data
def test_real_mnist_codes_and_reconstructions(mnist_test_batch):
    model = zoo.create("vq-vae-mnist", **{"encoder.channels": 16, "decoder.channels": 16})
    x = mnist_test_batch[:16]
    assert model.encoder.indices(x).shape == (16, 4, 4)
    nll = model.reconstruction_nll(x)
    assert nll.shape == (16,) and torch.isfinite(nll).all()
