"""A throwaway plugin for the tests of models that span components (tests/test_spanning.py and
the tests of recipe files and zoo compare): a VampPrior that takes the encoder, an encoder that
asks for the prior (to make a cycle), an objective of its own, a tiny data set and a recipe."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily

import zoo
from zoo import plugins


def _load(root, split, download):
    g = torch.Generator().manual_seed(1 if split == "train" else 2)
    prototypes = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    n = 200 if split == "train" else 100
    labels = torch.randint(0, 4, (n,), generator=g)
    images = (0.8 * prototypes[labels] + 0.2 * torch.rand(n, 1, 28, 28, generator=g)) * 255
    return images.round().to(torch.uint8), labels


class PseudoInputPrior(zoo.Prior):
    """A small VampPrior: the encoder's posteriors at learned pseudo-inputs, mixed uniformly."""

    def __init__(self, encoder: zoo.Encoder, latent_size: int, data_shape: tuple[int, ...], pseudo_inputs: int = 3):
        super().__init__()
        self.latent_size = latent_size
        self.encoder = encoder  # received from zoo; registered once, under the model
        self.pseudo = nn.Parameter(torch.rand(pseudo_inputs, *data_shape))

    def forward(self):
        q = self.encoder(self.pseudo)
        mix = Categorical(logits=torch.zeros(self.pseudo.shape[0], device=self.pseudo.device))
        return MixtureSameFamily(mix, q)


class AskingEncoder(zoo.Encoder):
    """An encoder whose factory asks for the prior (only to make a cycle with PseudoInputPrior)."""

    def __init__(self, prior: zoo.Prior, latent_size: int):
        super().__init__()
        self.latent_size = latent_size


class HalfELBO(zoo.Objective):
    """A third-party objective: the ELBO with its KL halved, logging the KL."""

    def __init__(self, weight: float = 0.5):
        super().__init__()
        self.weight = weight

    def forward(self, model, x):
        q = model.encoder(x)
        z = q.rsample()
        recon = model.likelihood(model.decoder(z)).log_prob(x)
        kl = q.log_prob(z) - model.prior().log_prob(z)
        return zoo.ObjectiveOutput(-(recon - self.weight * kl).mean(), {"kl": kl.mean().detach()})


def _plugin():
    from zoo.data import DatasetInfo

    module = types.SimpleNamespace()

    @zoo.hookimpl
    def register_priors(register):
        register("pseudo-vamp", PseudoInputPrior, description="VampPrior over 3 pseudo-inputs")

    @zoo.hookimpl
    def register_encoders(register):
        register("asking", AskingEncoder)

    @zoo.hookimpl
    def register_objectives(register):
        register("half-elbo", HalfELBO, description="ELBO with a halved KL")

    @zoo.hookimpl
    def register_datasets(register):
        register(DatasetInfo("spanning-tiny", "tiny", (1, 28, 28), _load, {}, {"train": 200, "test": 100}))

    @zoo.hookimpl
    def register_recipes(register):
        register(
            zoo.Recipe(
                id="tiny-vamp",
                encoder="conv-mnist",
                decoder="conv-mnist",
                prior="pseudo-vamp",
                likelihood="bernoulli",
                dataset="spanning-tiny",
                latent_size=3,
                encoder_options={"channels": 4},
                decoder_options={"channels": 4},
                objective="half-elbo",
                training=zoo.Training(epochs=1, batch_size=50),
            )
        )

    for name, value in dict(locals()).items():
        if name.startswith("register_"):
            setattr(module, name, value)
    return module


@pytest.fixture
def span():
    registry, pm = plugins.build(plugins=[("spanning", _plugin())])
    assert registry.plugins["spanning"].error is None, registry.plugins["spanning"].error
    with plugins.using(registry, pm):
        yield registry
