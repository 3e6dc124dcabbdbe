"""Components that need a partner (a ladder encoder and its prior), and the kit's promises about
learnable priors' samples and components' own losses."""

from __future__ import annotations

import pytest
import torch
from test_conformance import SmallEncoder, _gaussian, run_check
from torch import nn
from torch.distributions import Independent, Normal

import zoo
from zoo import plugins
from zoo.conformance import plugin_checks
from zoo.errors import IncompatibleComponentsError, ZooError


class LadderEncoder(SmallEncoder):
    """An encoder whose prior must be the ladder prior (it reads the encoder's top layer)."""

    partners = {"prior": "ladder"}


class LadderPrior(zoo.Prior):
    partners = {"encoder": "ladder"}

    def __init__(self, latent_size: int, encoder) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.loc = nn.Parameter(torch.zeros(latent_size))
        self.encoder = encoder

    def forward(self):
        return Independent(Normal(self.loc, torch.ones_like(self.loc)), 1)


class DetachedSamplesPrior(zoo.Prior):
    """A learnable prior whose rsample is cut from its parameter."""

    def __init__(self, latent_size: int) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.loc = nn.Parameter(torch.zeros(latent_size))

    def forward(self):
        prior = Independent(Normal(self.loc, torch.ones_like(self.loc)), 1)

        class Cut(type(prior)):
            def rsample(self, sample_shape=torch.Size()):
                return super().rsample(sample_shape).detach()

        prior.__class__ = Cut
        return prior


class CodebookEncoder(SmallEncoder):
    """A parameter reached only by the encoder's own loss."""

    def __init__(self, latent_size: int, data_shape=(1, 8, 8)) -> None:
        super().__init__(latent_size, data_shape)
        self.codebook = nn.Parameter(torch.randn(3, latent_size))

    def forward(self, x):
        out = self.net(x)
        mean = out.chunk(2, dim=-1)[0]
        self.add_loss("codebook", ((mean.detach()[:, None] - self.codebook) ** 2).sum(-1).min(1).values.mean())
        return _gaussian(out)


def _plugin(**kinds):
    class Plugin:
        pass

    for kind, factories in kinds.items():

        def hook(register, _factories=factories):
            for id, factory in _factories.items():
                register(id, factory)

        setattr(Plugin, f"register_{kind}s", staticmethod(zoo.hookimpl(hook)))
    return Plugin()


@pytest.fixture
def ladder():
    registry, pm = plugins.build(
        [("ladders", _plugin(encoder={"ladder": LadderEncoder}, prior={"ladder": LadderPrior}))]
    )
    with plugins.using(registry, pm):
        yield


def test_a_component_composed_without_its_partner_is_one_line(ladder):
    model = zoo.compose("ladder", "conv-mnist", "ladder", "bernoulli", latent_size=4, data_shape=(1, 8, 8))
    assert model.prior.encoder is model.encoder
    with pytest.raises(IncompatibleComponentsError) as caught:
        zoo.compose("ladder", "conv-mnist", "standard-normal", "bernoulli", latent_size=4, data_shape=(1, 8, 8))
    assert str(caught.value) == (
        "encoder 'ladder' must be composed with prior 'ladder' (its declared partner), not prior 'standard-normal'"
    )


def test_a_recipe_pairing_them_wrongly_is_refused_before_training(ladder, tmp_path):
    recipe = tmp_path / "wrong.toml"
    recipe.write_text(
        'dataset = "mnist"\nlatent_size = 4\n[encoder]\nid = "ladder"\n[decoder]\nid = "conv-mnist"\n'
        '[prior]\nid = "standard-normal"\n'
    )
    from zoo.recipe import recipe_from_file

    with pytest.raises(ZooError, match="its declared partner"):
        zoo.from_recipe(recipe_from_file(recipe))


def test_the_kit_builds_a_component_with_its_declared_partner(ladder):
    checks = {c.id: c for c in plugin_checks("ladders")}
    for check_id in ("encoder[ladder]-rsample_gradients", "prior[ladder]-rsample_gradients"):
        checks[check_id]()  # no patching of zoo.conformance.PARTNERS


def test_bad_partners_are_a_one_line_error():
    class Odd(SmallEncoder):
        partners = {"priors": "x"}

    registry, pm = plugins.build([("odd", _plugin(encoder={"odd": Odd}))])
    with plugins.using(registry, pm), pytest.raises(ZooError, match="must map component kinds to ids"):
        zoo.compose("odd", "conv-mnist", latent_size=4, data_shape=(1, 8, 8))


def test_the_kit_catches_a_learnable_prior_with_detached_samples():
    message = run_check("prior[cut]-rsample_gradients", prior={"cut": DetachedSamplesPrior})
    assert "prior().rsample() must carry the gradient to the prior's parameters" in message


def test_the_kit_counts_a_components_own_loss_as_a_gradient_path():
    registry, pm = plugins.build([("vq-test", _plugin(encoder={"codebook": CodebookEncoder}))])
    with plugins.using(registry, pm):
        checks = {c.id: c for c in plugin_checks("vq-test")}
        checks["encoder[codebook]-rsample_gradients"]()
