"""Networks and likelihoods on images of any shape: grey and colour, square and not, even and odd
sides. Every conv, ResNet and MLP encoder and decoder of zoo's plugins builds for each shape,
produces exactly the shapes the interfaces promise, trains, and refuses a shape it cannot take with
one ZooError line; the 28x28 reference models are the ones they were; the CPU fast paths agree with
the layers on the new shapes; the image recipes train on stand-ins of their data sets."""

from __future__ import annotations

import math
import types

import pytest
import torch
from torch import nn

import zoo
from zoo import plugins

SHAPES = [(1, 28, 28), (3, 40, 40), (1, 28, 20), (3, 32, 32), (3, 64, 64), (1, 27, 19)]
#: (encoder and decoder id, small options): every image network of zoo's plugins.
NETWORKS = {
    "conv-mnist": {"channels": 4},
    "conv": {"channels": 4},
    "resnet": {"channels": 4, "blocks": 1},
    "aevb-mlp": {"hidden": 16},
    "burda-mlp": {"hidden": 16},
    "gated-mlp": {"hidden": 16},
    "deep-mlp": {"hidden": 16},
}

#: Adam's step size for the few training steps (1e-2 otherwise). On images of thousands of values a
#: large first step inflates the KL term faster than the reconstruction gains, most for the gated MLP
#: (He-initialised gated layers) and the ResNet.
LEARNING_RATES = {"gated-mlp": 1e-4, "resnet": 3e-3}


def structured_images(shape, n=16, seed=0):
    """Noisy copies of two random prototypes, as 8-bit grey levels in [0, 1]: something to learn."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(2, *shape, generator=g)
    picks = torch.randint(0, 2, (n,), generator=g)
    x = 0.8 * prototypes[picks] + 0.2 * torch.rand(n, *shape, generator=g)
    return torch.round(x * 255) / 255


def model_for(net: str, shape, likelihood="bernoulli", likelihood_options=None, latent_size=4):
    return zoo.compose(
        net,
        net,
        "standard-normal",
        likelihood,
        latent_size=latent_size,
        data_shape=shape,
        encoder_options=NETWORKS[net],
        decoder_options=NETWORKS[net],
        likelihood_options=likelihood_options or {},
    )


def elbo_at_seed(model, x, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        return torch.stack([model.elbo(x).elbo for _ in range(4)]).mean()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_every_network_takes_the_shape_and_trains_on_it(net, shape):
    torch.manual_seed(0)
    model = model_for(net, shape)
    x = structured_images(shape)
    q = model.encoder(x)
    assert tuple(q.batch_shape) == (16,) and tuple(q.event_shape) == (4,)
    assert model.decoder(q.rsample()).shape == (16, *shape)
    assert model.decoder(torch.randn(2, 3, 4)).shape == (2, 3, *shape)  # leading sample dims
    assert model.sample(3).shape == (3, *shape)
    assert model.reconstruct(x[:5]).shape == (5, *shape)

    before = elbo_at_seed(model, x)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATES.get(net, 1e-2))
    for _ in range(10):
        loss = -model.elbo(x).elbo.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = elbo_at_seed(model, x)
    assert torch.isfinite(after) and after > before + 1.0, (net, shape, before.item(), after.item())


@pytest.mark.parametrize("net", ["aevb-mlp", "burda-mlp", "gated-mlp", "deep-mlp"])
def test_mlp_networks_take_flat_data_too(net):
    model = model_for(net, (784,))
    x = structured_images((784,), n=4)
    assert model.sample(2).shape == (2, 784)
    assert torch.isfinite(model.elbo(x).elbo).all()


# -- likelihoods on colour --------------------------------------------------------------------------

LIKELIHOODS = [
    ("bernoulli", {}),
    ("continuous-bernoulli", {}),
    ("gaussian", {}),
    ("gaussian", {"variance": "learned", "mean": "sigmoid"}),
    ("discretized-logistic", {}),
    ("discretized-logistic-mixture", {"components": 3}),
    ("discretized-logistic-mixture", {"components": 3, "coupled": True}),
]


@pytest.mark.parametrize("shape", [(3, 40, 40), (1, 27, 19)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("likelihood,options", LIKELIHOODS, ids=lambda v: v if isinstance(v, str) else "")
def test_likelihoods_have_parameters_per_channel_and_the_datas_shape(likelihood, options, shape):
    torch.manual_seed(0)
    model = model_for("conv", shape, likelihood, options)
    params = model.likelihood.param_shape(shape)
    assert params[1:] == shape[1:] and params[0] % shape[0] == 0  # a whole set of parameters per channel
    x = structured_images(shape, n=4)
    dist = model.likelihood(model.decoder(model.encoder(x).rsample()))
    assert dist.log_prob(x).shape == (4,)
    assert dist.mean.shape == dist.sample().shape == (4, *shape)
    assert torch.isfinite(model.elbo(x).elbo).all()


def test_gaussian_sigmoid_means_lie_in_the_unit_interval():
    likelihood = plugins.get_registry().get("likelihood", "gaussian").load()
    squashed = likelihood((1, 4, 4), variance="learned", mean="sigmoid")
    params = 5 * torch.randn(3, 2, 4, 4)
    mean = squashed(params).mean
    assert ((mean > 0) & (mean < 1)).all() and torch.equal(mean, torch.sigmoid(params[:, :1]))
    plain = likelihood((1, 4, 4), variance="learned")
    assert torch.equal(plain(params).mean, params[:, :1])


def test_the_mixture_models_colour_channels_independently():
    """The discretized logistic mixture on a colour image is the sum over channels of a mixture per
    channel (PixelCNN++'s linear coupling of the channel means is not used): each channel's
    log-likelihood is what the grey-level mixture gives that channel with its own parameters."""
    from zoo_resnet.components import DiscretizedLogisticMixtureLikelihood

    torch.manual_seed(0)
    k = 4
    colour = DiscretizedLogisticMixtureLikelihood((3, 5, 6), components=k)
    grey = DiscretizedLogisticMixtureLikelihood((1, 5, 6), components=k)
    params = torch.randn(2, 3 * k * 3, 5, 6)
    x = torch.randint(0, 256, (2, 3, 5, 6)) / 255
    grouped = params.view(2, 3, k, 3, 5, 6)  # logits/locations/log-scales, component, channel
    per_channel = [grey(grouped[:, :, :, c].reshape(2, 3 * k, 5, 6)).log_prob(x[:, c : c + 1]) for c in range(3)]
    torch.testing.assert_close(colour(params).log_prob(x), sum(per_channel))


def _coupled(k=2, channels=3, bins=8, seed=0):
    """A coupled mixture over one pixel of ``channels`` channels with ``bins`` levels, random parameters."""
    from zoo_resnet.distributions import CoupledDiscretizedLogisticMixture

    g = torch.Generator().manual_seed(seed)
    pairs = channels * (channels - 1) // 2
    return CoupledDiscretizedLogisticMixture(
        torch.randn(k, 1, 1, generator=g),
        torch.rand(k, channels, 1, 1, generator=g),
        torch.randn(k, channels, 1, 1, generator=g) - 1.5,
        torch.tanh(2 * torch.randn(k, pairs, 1, 1, generator=g)),
        bins,
    )


def _every_colour(bins, channels=3):
    grid = torch.cartesian_prod(*[torch.arange(bins)] * channels).float() / (bins - 1)
    return grid.view(-1, channels, 1, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_coupled_mixture_sums_to_one_over_every_colour_of_a_pixel(seed):
    total = _coupled(seed=seed).log_prob(_every_colour(8)).exp().sum()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_the_coupled_mixture_samples_colours_with_their_probabilities():
    dist = _coupled(bins=4, seed=3)
    colours = _every_colour(4)
    probabilities = dist.log_prob(colours).exp()
    torch.manual_seed(0)
    samples = dist.sample((20000,))
    codes = (samples.view(-1, 3) * 3).round().long() @ torch.tensor([16, 4, 1])
    frequencies = torch.bincount(codes, minlength=64).float() / len(codes)
    assert (frequencies - probabilities).abs().max() < 0.01
    assert dist.mean.shape == (3, 1, 1) and ((dist.mean >= 0) & (dist.mean <= 1)).all()


def test_the_coupled_mixture_couples_the_channels_and_is_the_plain_one_for_grey():
    from zoo_resnet.components import DiscretizedLogisticMixtureLikelihood

    torch.manual_seed(0)
    coupled = DiscretizedLogisticMixtureLikelihood((3, 5, 6), components=4, coupled=True)
    assert coupled.param_shape((3, 5, 6)) == (
        40,
        5,
        6,
    )  # per component: 1 logit, 3 locations, 3 log-scales, 3 coefficients
    params = torch.randn(2, 7, 40, 5, 6, requires_grad=True)  # leading [K, B], as the IW bound decodes
    x = torch.randint(0, 256, (7, 3, 5, 6)) / 255
    dist = coupled(params)
    assert dist.log_prob(x.expand(2, *x.shape)).shape == (2, 7)
    assert dist.mean.shape == dist.sample().shape == (2, 7, 3, 5, 6)
    dist.log_prob(x).sum().backward()
    coefficient_grads = params.grad[:, :, 28:]  # the last 4 x 3 parameter channels
    assert coefficient_grads.abs().sum() > 0  # the coefficients are trained
    independent = DiscretizedLogisticMixtureLikelihood((3, 5, 6), components=4)
    assert independent.param_shape((3, 5, 6)) == (36, 5, 6)

    grey, grey_coupled = (DiscretizedLogisticMixtureLikelihood((1, 5, 6), 4, c) for c in (False, True))
    grey_params = torch.randn(3, 12, 5, 6)
    g = torch.randint(0, 256, (3, 1, 5, 6)) / 255
    torch.testing.assert_close(grey(grey_params).log_prob(g), grey_coupled(grey_params).log_prob(g))
    torch.testing.assert_close(grey(grey_params).mean, grey_coupled(grey_params).mean)
    with pytest.raises(zoo.ZooError, match="coupled=True takes images shaped"):
        DiscretizedLogisticMixtureLikelihood((784,), coupled=True)


def test_the_coupled_mixture_passes_the_conformance_checks_on_colour():
    from zoo.conformance import plugin_checks

    options = {"likelihood:discretized-logistic-mixture": {"components": 3, "coupled": True}}
    checks = [c for c in plugin_checks("resnet", options) if c.target == "discretized-logistic-mixture"]
    assert checks
    for check in checks:
        assert check() == [(1, 8, 8), (3, 9, 14)]


# -- shapes a network cannot take ------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoder,shape,options,message",
    [
        ("conv", (3, 2, 9), {}, "encoder 'conv': the conv encoder with downsamplings=2 takes images of at least 4x4"),
        ("conv-mnist", (784,), {}, "takes images shaped [channels, height, width] (e.g. (1, 28, 28) or (3, 32, 32))"),
        ("conv", (1, 28, 28), {"downsamplings": 5}, "at least 32x32 pixels, got 28x28; set downsamplings to at most 4"),
        ("resnet", (1, 3, 3), {}, "encoder 'resnet': the resnet encoder with downsamplings=2 takes images of at least"),
        ("resnet", (1, 784), {}, "the resnet encoder takes images shaped [channels, height, width]"),
    ],
)
def test_a_shape_a_network_cannot_take_is_one_line_naming_the_shapes_it_takes(encoder, shape, options, message):
    with pytest.raises(zoo.ZooError) as info:
        zoo.compose(encoder, "aevb-mlp", latent_size=4, data_shape=shape, encoder_options=options)
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("decoder", ["conv", "conv-mnist", "resnet"])
def test_decoders_refuse_what_their_encoders_refuse(decoder):
    with pytest.raises(zoo.ZooError, match=f"decoder '{decoder}': the .* decoder .* takes images of at least 4x4"):
        zoo.compose("aevb-mlp", decoder, latent_size=4, data_shape=(1, 3, 30))


@pytest.mark.parametrize("net", ["conv", "resnet"])
def test_more_downsamplings_for_larger_images(net):
    torch.manual_seed(0)
    options = {**NETWORKS[net], "downsamplings": 4}
    model = zoo.compose(
        net, net, latent_size=4, data_shape=(3, 64, 48), encoder_options=options, decoder_options=options
    )
    widths = [m.out_channels for m in model.encoder.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert widths == ([4, 8, 16, 32] if net == "conv" else [8, 16, 32, 64])  # doubling at every halving
    assert model.sample(2).shape == (2, 3, 64, 48)


# -- the 28x28 models are the ones they were ---------------------------------------------------------

#: Computed with the networks as they were before they took other shapes (torch 2.14.1, CPU):
#: torch.manual_seed(0); model = zoo.create(id); x = 8-bit levels from a generator seeded 1, [8, 1, 28, 28];
#: torch.manual_seed(2); model.elbo(x).elbo[:3], and the sum of every parameter.
PINNED = {
    "vae-conv-mnist": ([-550.1582641601562, -552.2532348632812, -550.7096557617188], -5.0714554628751785, 12),
    "vae-resnet-dl-mnist": ([-5511.67529296875, -5498.90234375, -5493.5390625], 43.85063505879779, 64),
}


@pytest.mark.parametrize("model_id", sorted(PINNED))
def test_the_28x28_reference_models_are_unchanged(model_id):
    elbo, parameter_sum, tensors = PINNED[model_id]
    torch.manual_seed(0)
    model = zoo.create(model_id)
    x = torch.randint(0, 256, (8, 1, 28, 28), generator=torch.Generator().manual_seed(1)) / 255.0
    torch.manual_seed(2)
    got = model.elbo(x).elbo[:3]
    assert len(model.state_dict()) == tensors
    assert sum(p.double().sum().item() for p in model.parameters()) == pytest.approx(parameter_sum, abs=1e-9)
    torch.testing.assert_close(got, torch.tensor(elbo), rtol=1e-6, atol=1e-4)


def test_the_conv_nets_are_the_seeds_layers_with_the_same_weights():
    """Built under one seed, conv-mnist's layers are the seed article's nn.Sequential, weight for weight."""
    from zoo_aevb.components import ConvDecoder, ConvEncoder

    torch.manual_seed(0)
    encoder = ConvEncoder(20)
    decoder = ConvDecoder(20)
    torch.manual_seed(0)
    seed_encoder = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1),
        nn.ReLU(True),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(True),
        nn.Conv2d(32, 40, 7),
    )
    seed_decoder = nn.Sequential(
        nn.ConvTranspose2d(20, 32, 7),
        nn.ReLU(True),
        nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(True),
        nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),
    )
    for ours, seeds in ((encoder.net, seed_encoder), (decoder.net, seed_decoder)):
        assert ours.state_dict().keys() == seeds.state_dict().keys()
        assert all(torch.equal(ours.state_dict()[k], v) for k, v in seeds.state_dict().items())
    x = torch.rand(4, 1, 28, 28)
    mean, log_var = seed_encoder(x).flatten(1).chunk(2, dim=1)
    torch.testing.assert_close(encoder(x).mean, mean, rtol=1e-5, atol=1e-5)
    z = torch.randn(4, 20)
    torch.testing.assert_close(decoder(z), seed_decoder(z.view(4, 20, 1, 1)), rtol=1e-5, atol=1e-5)


# -- the CPU fast paths on other shapes ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 20), (3, 40, 40), (1, 27, 19), (2, 9, 14), (1, 6, 10)])
def test_conv_cpu_fast_paths_equal_the_layers_on_other_shapes(shape, monkeypatch):
    """Where their assumptions hold (the last transposed conv doubling both sides, the first conv
    reading one channel) the fast paths run and give the layers' outputs and gradients; elsewhere
    (an odd side: output padding 0) the layer runs as it is."""
    from zoo_aevb import components
    from zoo_aevb.fast_paths import transposed_fast_path_fits

    torch.manual_seed(0)
    decoder = components.ConvDecoder(6, shape, channels=4)
    encoder = components.ConvEncoder(6, shape, channels=4)
    doubles = all(side % 2 == 0 for side in shape[1:])  # the last transposed conv doubles both sides exactly
    assert transposed_fast_path_fits(decoder.net[-1]) == (doubles and shape[0] <= 3)
    z = torch.randn(5, 6)
    x = torch.rand(5, *shape, requires_grad=True)
    calls = []
    real = components._cpu_fast_path
    monkeypatch.setattr(components, "_cpu_fast_path", lambda *a: calls.append(1) or real(*a))

    def run():
        decoder.zero_grad(), encoder.zero_grad()
        x.grad = None
        out = decoder.decode(z)
        q = encoder(x)
        (out.square().sum() + q.mean.sin().sum() + q.stddev.sum()).backward()
        return [
            out.detach(),
            q.mean.detach(),
            *(p.grad.clone() for p in [*decoder.parameters(), *encoder.parameters(), x]),
        ]

    fast = run()
    expected_calls = int(shape[0] == 1) + int(transposed_fast_path_fits(decoder.net[-1]))
    assert len(calls) == expected_calls  # asked only where the pass fits
    monkeypatch.setattr(components, "_cpu_fast_path", lambda *args: False)
    reference = run()
    assert fast[0].shape == (5, *shape)
    for got, expected in zip(fast, reference):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# -- the image recipes, trained on stand-ins of their data sets ----------------------------------------

#: The recipe, the data set it names and that data set's shape. The data sets are registered by zoo's data
#: module when it has them; the training test uses stand-ins of the same shape under other ids.
IMAGE_RECIPES = {
    "vae-conv": ("mnist", (1, 28, 28)),
    "vae-mlp-frey-faces": ("frey-faces", (1, 28, 20)),
    "vae-resnet-dlm-cifar10": ("cifar10", (3, 32, 32)),
    "vae-conv-celeba64": ("celeba64", (3, 64, 64)),
}


def _standin_plugin():
    """Random 8-bit images of each recipe's shape, registered as ``standin-<C>x<H>x<W>``."""
    from zoo.data import DatasetInfo

    def load(root, split, download, shape):
        n = 32 if split == "train" else 16
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        images = (structured_images(tuple(shape), n=n, seed=int(split == "test")) * 255).round().to(torch.uint8)
        return images, torch.randint(0, 10, (n,), generator=g)

    module = types.ModuleType("standin_images")

    def register_datasets(register):
        for _, shape in IMAGE_RECIPES.values():
            name = "standin-" + "x".join(map(str, shape))
            register(DatasetInfo(name, "random images", shape, load, {"shape": list(shape)}, {"train": 32, "test": 16}))

    module.register_datasets = zoo.hookimpl(register_datasets)
    return module


@pytest.mark.parametrize("recipe_id", sorted(IMAGE_RECIPES))
def test_image_recipes_name_their_data_set_and_train_on_its_shape(recipe_id, tmp_path):
    dataset, shape = IMAGE_RECIPES[recipe_id]
    registry, pm = plugins.build([("standin", _standin_plugin())])
    with plugins.using(registry, pm):
        recipe = zoo.get_recipe(recipe_id)
        assert recipe.dataset == dataset and recipe.reference.get("paper")
        if dataset in registry.ids("dataset"):  # where zoo registers it, it has the shape the recipe was set up for
            assert tuple(registry.get("dataset", dataset).load().shape) == shape
        standin = "standin-" + "x".join(map(str, shape))
        trainer = zoo.Trainer(
            recipe_id,
            overrides={"dataset": standin, "batch_size": 8},
            out=tmp_path / "run",
            device="cpu",
            progress=False,
            max_steps=2,
        )
        history = trainer.fit()
        assert trainer.model.data_shape == shape and math.isfinite(history[-1]["test_loss"])
        assert trainer.model.sample(2).shape == (2, *shape)


def test_the_frey_face_recipe_has_the_papers_settings():
    recipe = zoo.get_recipe("vae-mlp-frey-faces")
    t = recipe.training
    assert (t.optimizer, t.batch_size) == ("adagrad", 100) and t.lr in (0.01, 0.02, 0.1)
    assert t.weight_decay == pytest.approx(1 / 1965, rel=0.01)  # a N(0, I) prior on the weights, per datapoint
    assert recipe.likelihood == "gaussian" and recipe.likelihood_options == {"variance": "learned", "mean": "sigmoid"}
    model = zoo.compose(
        recipe.encoder,
        recipe.decoder,
        recipe.prior,
        recipe.likelihood,
        latent_size=recipe.latent_size,
        data_shape=(1, 28, 20),
        encoder_options=recipe.encoder_options,
        decoder_options=recipe.decoder_options,
        likelihood_options=recipe.likelihood_options,
    )
    for net, sizes in (
        (model.encoder, [560, 200, 2 * recipe.latent_size]),
        (model.decoder, [recipe.latent_size, 200, 1120]),
    ):
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        assert [linears[0].in_features] + [m.out_features for m in linears] == sizes
        assert [
            type(m)
            for m in net.modules()
            if not isinstance(m, (nn.Linear, nn.Sequential, nn.Flatten, zoo.Encoder, zoo.Decoder))
        ] == [nn.Tanh]
    assert "figure 2" in recipe.reference["paper"] and "Nz = 2, 5, 10 and 20" in recipe.reference["protocol"]
