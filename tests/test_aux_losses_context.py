"""Auxiliary losses from components (added by every objective, logged) and the training context an
objective sees (the data set's size, the step, the epoch)."""

from __future__ import annotations

import json

import helpers_random_images as random_images
import pytest
import torch
from helpers_random_images import SIDE
from torch import nn
from torch.distributions import Independent, Normal

import zoo
from zoo import in_process, plugins
from zoo.objectives import TrainingStep, take_aux_losses


class CodebookEncoder(zoo.Encoder):
    """A Gaussian encoder with a 'codebook' that only its auxiliary loss reaches."""

    def __init__(self, latent_size, data_shape, via_distribution=False):
        super().__init__()
        self.latent_size = latent_size
        self.via_distribution = via_distribution
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 2 * latent_size))
        self.codebook = nn.Parameter(torch.zeros(4, latent_size))

    def forward(self, x):
        mean, log_var = self.net(x).chunk(2, dim=1)
        q = Independent(Normal(mean, (0.5 * log_var).exp()), 1)
        commit = ((mean.detach()[:, None, :] - self.codebook) ** 2).sum(-1).min(1).values.mean()
        if self.via_distribution:
            q.aux_losses = {"codebook": commit}
        else:
            self.add_loss("codebook", commit)
        return q


class ContextRecorder(zoo.Objective):
    """The ELBO, recording the context it is trained in."""

    cuda_graph_safe = False
    seen: list = []

    def forward(self, model, x):
        c = self.context
        ContextRecorder.seen.append((c.dataset_size, c.batch_size, c.steps_per_epoch, c.epochs, c.epoch, c.step))
        terms = model.elbo(x)
        return zoo.ObjectiveOutput(-terms.elbo.mean(), {})


@pytest.fixture
def registered(monkeypatch):
    in_process.forget()
    plugins.reset()
    zoo.register("dataset", random_images.dataset("aux-data"))
    zoo.register("encoder", "codebook-mlp", CodebookEncoder)
    zoo.register("objective", "context-recorder", ContextRecorder)
    yield
    in_process.forget()
    plugins.reset()


def _model(via_distribution=False):
    encoder = CodebookEncoder(latent_size=3, data_shape=(1, SIDE, SIDE), via_distribution=via_distribution)
    with torch.no_grad():
        encoder.codebook.normal_()
    return zoo.compose(encoder, "deep-mlp", "standard-normal", "bernoulli", latent_size=3, data_shape=(1, SIDE, SIDE))


@pytest.mark.parametrize("objective", ["elbo", "iwae", "ciwae"])
@pytest.mark.parametrize("via_distribution", [False, True])
def test_a_component_loss_trains_its_parameters_under_any_objective(registered, tmp_path, objective, via_distribution):
    model = _model(via_distribution)
    before = model.encoder.codebook.detach().clone()
    trainer = zoo.Trainer(
        model, dataset="aux-data", objective=objective, out=tmp_path / "run", device="cpu", progress=False,
        training={"epochs": 1, "batch_size": 50, "lr": 1e-2},
    )  # fmt: skip
    history = trainer.fit()
    assert not torch.equal(model.encoder.codebook.detach(), before), "the codebook is reached by its loss alone"
    assert history[0]["train_aux_codebook"] > 0
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert "train_aux_codebook" in row


def test_aux_losses_join_the_loss_and_are_not_kept_outside_training():
    model = _model()
    step = TrainingStep(model, zoo.build_objective("elbo")[0])
    x = torch.rand(10, 1, SIDE, SIDE).bernoulli()
    model.train()
    loss, logs = step(x)
    plain = -model.elbo(x).elbo.mean()  # the same draw is not repeated, so compare the logged term
    assert "aux_codebook" in logs and float(logs["aux_codebook"]) > 0
    assert torch.isfinite(loss) and plain.requires_grad
    take_aux_losses(model)
    model.eval()
    model.elbo(x)
    assert take_aux_losses(model) == {}, "evaluation passes add nothing"


def test_an_objective_knows_the_data_set_size_the_epoch_and_the_step(registered, tmp_path):
    ContextRecorder.seen = []
    model = zoo.compose(
        "deep-mlp", "deep-mlp", "standard-normal", "bernoulli", latent_size=3, data_shape=(1, SIDE, SIDE)
    )
    zoo.Trainer(
        model, dataset="aux-data", objective="context-recorder", out=tmp_path / "run", device="cpu",
        progress=False, training={"epochs": 2, "batch_size": 100},
    ).fit()  # fmt: skip
    training = [s for s in ContextRecorder.seen if s[0] == 400]
    assert training[0] == (400, 100, 4, 2, 1, 0)
    assert [s[4:] for s in training[-8:]] == [(1, i) for i in range(4)] + [(2, 4 + i) for i in range(4)]
    assert zoo.build_objective("elbo")[0].context is None
