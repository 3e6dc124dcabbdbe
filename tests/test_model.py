"""Models: a smoke test over every registered model, and composition from ids and objects."""

from __future__ import annotations

import os

import pytest
import torch
from helpers_steps import assert_one_step_moves_every_parameter
from torch import nn
from torch.distributions import Independent, Normal

import zoo
from zoo import plugins
from zoo.errors import IncompatibleComponentsError, ZooError
from zoo.objectives import TrainingStep

SMOKE_BATCH = 16


def registered_models() -> list[str]:
    """Every model id, computed at collection time, which runs before conftest's session fixture
    limits plugin loading, so the same limit (zoo's own plugins) is applied here."""
    from conftest import OWN_PLUGINS

    saved = os.environ.get("ZOO_PLUGINS")
    os.environ["ZOO_PLUGINS"] = OWN_PLUGINS
    try:
        registry, _ = plugins.build()
        return registry.ids("recipe")
    finally:
        if saved is None:
            del os.environ["ZOO_PLUGINS"]
        else:
            os.environ["ZOO_PLUGINS"] = saved


MODEL_IDS = registered_models()


def component(kind: str, id: str, **kwargs):
    """Build a registered component directly (as a user holding its class would)."""
    return plugins.get_registry().get(kind, id).load()(**kwargs)


class TinyEncoder(zoo.Encoder):
    """A user's own encoder: one linear layer to the mean and log-variance of q(z|x)."""

    def __init__(self, latent_size: int, data_size: int = 784) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.linear = nn.Linear(data_size, 2 * latent_size)

    def forward(self, x):
        mean, log_var = self.linear(x.flatten(1)).chunk(2, dim=1)
        return Independent(Normal(mean, torch.exp(0.5 * log_var)), 1)


def recipe_dataset(model_id: str):
    """The recipe's data set, or a skip when no loaded plugin registers it (the recipe cannot be built)."""
    recipe = zoo.get_recipe(model_id)
    registry = plugins.get_registry()
    if recipe.dataset not in registry.ids("dataset"):
        pytest.skip(f"{model_id}: its data set {recipe.dataset!r} is not registered by a loaded plugin")
    return registry.get("dataset", recipe.dataset).load()


def batch_for(model_id: str, images: torch.Tensor) -> torch.Tensor:
    """The real MNIST batch as the model's data set presents it (binarized if it is binarized); for a
    data set of another shape (colour, other sizes), random 8-bit images of that shape."""
    dataset = recipe_dataset(model_id)
    x = images[:SMOKE_BATCH]
    if tuple(dataset.shape) != tuple(x.shape[1:]):
        levels = torch.randint(0, 256, (SMOKE_BATCH, *dataset.shape), generator=torch.Generator().manual_seed(0))
        x = levels / 255
    if dataset.binarized:
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(0))
    return x


# -- every registered model -------------------------------------------------------------------


def test_registry_wide_smoke_test_covers_every_model():
    assert zoo.list_models() == MODEL_IDS and len(MODEL_IDS) >= 5


def check_deterministic_model(model_id, model, x):
    """A model with a deterministic encoder: the ELBO is refused, the reconstruction is finite, and the
    recipe's objective gives every parameter a finite gradient."""
    from zoo.distributions import NoDensityError

    with pytest.raises(NoDensityError):
        model.elbo(x)
    recon = model.reconstruction_nll(x)
    assert recon.shape == (len(x),) and torch.isfinite(recon).all()
    recipe = zoo.get_recipe(model_id)
    objective, _ = zoo.build_objective(recipe.objective, dict(recipe.objective_options))
    # the trainer's step: the objective plus the components' own losses (a VQ codebook's)
    loss, _ = TrainingStep(model.train(), objective)(x)
    loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), f"{model_id}: {name}"


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_every_registered_model(model_id, mnist_test_batch):
    torch.manual_seed(0)
    x = batch_for(model_id, mnist_test_batch)
    model = zoo.create(model_id)
    if model.deterministic:  # an autoencoder: no ELBO, its own checks in test_deterministic.py
        return check_deterministic_model(model_id, model, x)

    terms = model(x)
    assert isinstance(terms, zoo.ELBOTerms)
    for value in terms:
        assert value.shape == (len(x),)
        assert torch.isfinite(value).all()
    assert torch.allclose(terms.elbo, terms.recon - terms.kl)

    # The recipe's own objective (ELBO, IWAE, ...) is what trains it.
    recipe = zoo.get_recipe(model_id)
    # Without the KL warm-up, whose weight is 0 at the first step, so the prior's parameters get a gradient.
    options = {k: v for k, v in recipe.objective_options.items() if k != "warmup"}
    objective, _ = zoo.build_objective(recipe.objective, options, model)
    loss, logs = objective(model, x)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(v) for v in logs.values())
    loss.backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{model_id}: no gradient reaches {name}"
            assert torch.isfinite(parameter.grad).all(), f"{model_id}: non-finite gradient in {name}"
            assert parameter.grad.abs().sum() > 0, f"{model_id}: zero gradient in {name}"

    with torch.no_grad():
        # Several one-sample ELBOs, so their mean is a fair estimate of the bound itself.
        elbo = torch.stack([model.elbo(x).elbo for _ in range(8)]).mean()
        iwae = model.iwae(x, samples=32)
    assert iwae.shape == (len(x),) and torch.isfinite(iwae).all()
    assert iwae.mean() >= elbo, f"{model_id}: IWAE {iwae.mean():.2f} below ELBO {elbo:.2f}"


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_every_registered_model_describes_itself(model_id):
    recipe_dataset(model_id)
    model = zoo.create(model_id)
    recipe = zoo.get_recipe(model_id)
    assert model.spec["recipe"]["id"] == model_id
    for kind in ("encoder", "decoder", "prior", "likelihood"):
        assert model.spec["components"][kind]["id"] == getattr(recipe, kind)
    assert model.latent_size == recipe.latent_size


# -- composing ------------------------------------------------------------------------------------


def test_compose_from_ids():
    model = zoo.compose("conv-mnist", "conv-mnist", "standard-normal", "continuous-bernoulli", latent_size=16)
    assert isinstance(model, zoo.VAE)
    assert model.latent_size == 16
    assert model.spec["components"]["likelihood"]["id"] == "continuous-bernoulli"
    terms = model.elbo(torch.rand(4, 1, 28, 28))
    assert torch.isfinite(terms.elbo).all()


def test_compose_from_objects():
    model = zoo.compose(
        encoder=TinyEncoder(8),
        decoder=component("decoder", "conv-mnist", latent_size=8),
        prior=component("prior", "mixture-of-gaussians", latent_size=8, components=3),
        likelihood=component("likelihood", "bernoulli"),
        latent_size=8,
    )
    # Objects of registered classes are written down by id and the options they were built with;
    # the unregistered TinyEncoder cannot be, and says why.
    components = model.spec["components"]
    assert components["encoder"]["id"] is None and "not registered" in components["encoder"]["problem"]
    assert components["decoder"] == {**components["decoder"], "id": "conv-mnist", "options": {}}
    assert components["prior"]["id"] == "mixture-of-gaussians" and components["prior"]["options"] == {"components": 3}
    assert components["likelihood"]["id"] == "bernoulli"
    assert torch.isfinite(model.elbo(torch.rand(4, 1, 28, 28)).elbo).all()


def test_compose_mixing_ids_and_objects():
    encoder = TinyEncoder(20)
    model = zoo.compose(
        encoder=encoder,
        decoder="conv-mnist",
        prior="standard-normal",
        likelihood="continuous-bernoulli",
        latent_size=20,
    )
    assert model.encoder is encoder
    assert model.spec["components"]["encoder"]["id"] is None
    assert model.spec["components"]["decoder"]["id"] == "conv-mnist"
    x = torch.rand(4, 1, 28, 28)
    model.loss(model(x)).backward()
    assert encoder.linear.weight.grad is not None


def test_latent_size_mismatch_names_both_components():
    with pytest.raises(IncompatibleComponentsError) as info:
        zoo.compose(encoder=TinyEncoder(20), decoder="conv-mnist", latent_size=16)
    message = str(info.value)
    assert "encoder TinyEncoder has latent_size 20" in message
    assert "decoder 'conv-mnist' has latent_size 16" in message


def test_latent_size_mismatch_between_objects():
    decoder = component("decoder", "conv-mnist", latent_size=16)
    with pytest.raises(IncompatibleComponentsError) as info:
        zoo.compose(encoder=TinyEncoder(20), decoder=decoder, latent_size=20)
    assert "ConvDecoder has latent_size 16" in str(info.value)
    assert "TinyEncoder has latent_size 20" in str(info.value)


def test_decoder_output_shape_must_match_likelihood():
    decoder = component("decoder", "conv-mnist", latent_size=20, output_shape=(1, 28, 28))
    with pytest.raises(IncompatibleComponentsError) as info:
        zoo.compose(
            "conv-mnist", decoder, likelihood="gaussian", likelihood_options={"variance": "learned"}, latent_size=20
        )
    message = str(info.value)
    assert "ConvDecoder" in message and "(1, 28, 28)" in message
    assert "'gaussian'" in message and "(2, 28, 28)" in message


def test_bad_option_lists_valid_options():
    with pytest.raises(ZooError) as info:
        zoo.compose("conv-mnist", "conv-mnist", latent_size=20, encoder_options={"hidden": 500})
    assert "encoder 'conv-mnist' has no option 'hidden'" in str(info.value)
    assert "channels" in str(info.value)


def test_bad_option_value_is_a_zoo_error():
    with pytest.raises(ZooError, match="'fixed' or 'learned'"):
        zoo.compose(
            "conv-mnist",
            "conv-mnist",
            likelihood="gaussian",
            latent_size=20,
            likelihood_options={"variance": "sometimes"},
        )


def test_create_with_overrides():
    model = zoo.create("vae-conv-mnist", latent_size=8, beta=2.0, **{"encoder.channels": 8, "epochs": 1})
    assert model.latent_size == 8
    assert model.spec["recipe"]["objective_options"] == {"beta": 2.0}
    assert model.encoder.net[0].out_channels == 8
    with pytest.raises(ZooError, match="unknown setting 'colour'"):
        zoo.create("vae-conv-mnist", colour="red")
    with pytest.raises(ZooError, match="has no option 'hidden'"):
        zoo.create("vae-conv-mnist", **{"decoder.hidden": 3})


def test_options_with_a_ready_made_object_are_refused():
    with pytest.raises(ZooError, match="ready-made"):
        zoo.compose(TinyEncoder(20), "conv-mnist", latent_size=20, encoder_options={"data_size": 784})


def test_component_of_the_wrong_kind_is_refused():
    with pytest.raises(ZooError, match="zoo.Decoder"):
        zoo.compose("conv-mnist", TinyEncoder(20), latent_size=20)
    with pytest.raises(ZooError, match="latent_size must be a positive integer"):
        zoo.compose("conv-mnist", "conv-mnist", latent_size=0)


# -- using a model --------------------------------------------------------------------------------


def test_sample_shape_and_range():
    model = zoo.create("vae-conv-mnist")
    images = model.sample(64)
    assert images.shape == (64, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    assert not images.requires_grad


def test_reconstruct():
    model = zoo.create("vae-conv-mnist")
    x = torch.rand(5, 1, 28, 28)
    out = model.reconstruct(x)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, model.reconstruct(x))  # the posterior mean: deterministic


def test_data_outside_the_unit_interval_is_refused_by_bernoulli():
    model = zoo.create("vae-conv-mnist")
    x = torch.rand(4, 1, 28, 28) * 255
    with pytest.raises(ZooError, match=r"outside \[0, 1\]"):
        model.elbo(x)
    with pytest.raises(ZooError, match=r"outside \[0, 1\]"):
        model.iwae(x, samples=2)
    with pytest.raises(ZooError, match=r"outside \[0, 1\]"):
        model.reconstruct(x - 300)


def test_wrong_input_shape_is_refused():
    model = zoo.create("vae-conv-mnist")
    with pytest.raises(ZooError, match=r"\[B, 1, 28, 28\]"):
        model.elbo(torch.rand(4, 784))


def test_gaussian_with_learned_variance_composes_and_trains_a_step():
    torch.manual_seed(0)
    model = zoo.compose(
        "conv-mnist", "conv-mnist", likelihood="gaussian", likelihood_options={"variance": "learned"}, latent_size=8
    )
    assert model.decoder.output_shape == (2, 28, 28)
    x = torch.randn(8, 1, 28, 28)  # a Gaussian has no support limits
    assert_one_step_moves_every_parameter(model, x, lr=1e-3)
    assert model.sample(3).shape == (3, 1, 28, 28)


def _layers_as_they_are(monkeypatch):
    from zoo_aevb import components

    monkeypatch.setattr(components, "_cpu_fast_path", lambda *args: False)


@pytest.mark.parametrize("out_channels,size", [(1, 28), (2, 28), (3, 16)])
def test_conv_cpu_fast_paths_equal_the_layers(out_channels, size, monkeypatch):
    """On the CPU the decoder's last transposed conv is computed as a matrix product and phase sums,
    and the encoder's first conv takes its weight gradient another way (both faster there); outputs
    and every gradient must be what the layers themselves give, with and without autograd."""
    from zoo_aevb.components import ConvDecoder, ConvEncoder

    torch.manual_seed(0)
    decoder = ConvDecoder(6, (out_channels, size, size), channels=4)
    encoder = ConvEncoder(6, (1, size, size), channels=4)
    z = torch.randn(5, 6)
    x = torch.rand(5, 1, size, size, requires_grad=True)  # as if another network produced it

    def run():
        decoder.zero_grad(), encoder.zero_grad()
        x.grad = None
        out = decoder.decode(z)
        q = encoder(x)
        (out.square().sum() + q.mean.sin().sum() + q.stddev.sum()).backward()
        grads = [p.grad.clone() for p in [*decoder.parameters(), *encoder.parameters(), x]]
        with torch.no_grad():
            no_grad = decoder.decode(z)
        with torch.inference_mode():
            inference = decoder.decode(z)
        return out.detach(), q.mean.detach(), grads, no_grad, inference

    fast = run()
    _layers_as_they_are(monkeypatch)
    reference = run()
    assert fast[0].shape == (5, out_channels, size, size)
    for got, expected in zip(fast[:2] + tuple(fast[2]) + fast[3:], reference[:2] + tuple(reference[2]) + reference[3:]):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_conv_cpu_fast_paths_stand_aside_for_autocast_and_other_dtypes(monkeypatch):
    from zoo_aevb import components

    layer = torch.nn.ConvTranspose2d(4, 1, 3, stride=2, padding=1, output_padding=1)
    h = torch.randn(2, 4, 7, 7)
    assert components._cpu_fast_path(h, layer)
    assert not components._cpu_fast_path(h.double(), layer)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not components._cpu_fast_path(h, layer)
        model = zoo.compose("conv-mnist", "conv-mnist", latent_size=4)
        assert model.decoder.decode(torch.randn(2, 4)).dtype == torch.bfloat16  # the layer's own autocast output


@pytest.mark.parametrize(
    "logits_shape,value_shape",
    [((4, 1, 28, 28), (4, 1, 28, 28)), ((3, 4, 1, 6, 6), (4, 1, 6, 6)), ((5,), (2, 3, 5))],
)
def test_bernoulli_cpu_log_prob_equals_torchs_with_its_gradients(logits_shape, value_shape):
    """The Bernoulli likelihood's CPU log-probability (exp and log instead of torch's log1p) matches
    torch's Bernoulli in value, first and second derivatives, under broadcasting either way."""
    from torch.distributions import Bernoulli

    from zoo_aevb.fast_paths import LogBernoulli

    torch.manual_seed(0)
    logits = (torch.randn(logits_shape) * 8).requires_grad_()
    results = []
    for family in (Bernoulli, LogBernoulli):
        torch.manual_seed(1)
        value = torch.rand(value_shape).requires_grad_()  # grey levels, as the zoo's data are
        log_p = family(logits=logits, validate_args=False).log_prob(value)
        grads = torch.autograd.grad(log_p.square().sum(), [logits, value], create_graph=True)
        second = torch.autograd.grad(grads[0].sin().sum(), logits)[0]
        results.append((log_p.detach(), *(g.detach() for g in grads), second))
    for got, expected in zip(results[1], results[0]):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    extreme = torch.tensor([-100.0, -30.0, 0.0, 30.0, 100.0])
    values = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(
        LogBernoulli(logits=extreme).log_prob(values), Bernoulli(logits=extreme).log_prob(values), rtol=1e-6, atol=1e-6
    )


def test_bernoulli_likelihood_uses_torchs_log_prob_off_the_cpu_fast_path(monkeypatch):
    from torch.distributions import Bernoulli

    from zoo_aevb import components
    from zoo_aevb.fast_paths import LogBernoulli

    likelihood = components.BernoulliLikelihood((1, 4, 4))
    assert type(likelihood(torch.zeros(2, 1, 4, 4)).base_dist) is LogBernoulli
    assert type(likelihood(torch.zeros(2, 1, 4, 4, dtype=torch.float64)).base_dist) is LogBernoulli  # made float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert type(likelihood(torch.zeros(2, 1, 4, 4)).base_dist) is Bernoulli
    _layers_as_they_are(monkeypatch)
    assert type(likelihood(torch.zeros(2, 1, 4, 4)).base_dist) is Bernoulli
    # a value of another dtype takes torch's own path
    p = LogBernoulli(logits=torch.zeros(3))
    assert p.log_prob(torch.ones(3, dtype=torch.float64)).dtype == torch.float64


def test_a_factory_runtime_error_with_options_is_one_line_even_without_a_message():
    """A component factory that fails with a RuntimeError under user options is one ZooError line:
    the error's first non-blank line, or its type when it has no message (was an IndexError)."""
    from zoo.factories import call_factory

    def width_factory(width: int = 2):
        raise failure

    cases = ((RuntimeError(), "RuntimeError"), (RuntimeError("\n  CUDA out of memory\nmore"), "CUDA out of memory"))
    for failure, shown in cases:  # noqa: B007 - width_factory raises the current one
        with pytest.raises(ZooError) as info:
            call_factory(width_factory, {"width": 3}, {}, "encoder 'w'")
        assert str(info.value) == f"encoder 'w' could not be built with options {{'width': 3}}: {shown}"
