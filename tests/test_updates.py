"""Objectives with optimizers of their own (a discriminator trained against the model): each loss
trains only its own parameters, every optimizer is checkpointed and a resume is exact."""

from __future__ import annotations

import json

import helpers_random_images as random_images
import pytest
import torch
from helpers_random_images import SIDE
from torch import nn

import zoo
from zoo import in_process, plugins
from zoo.checkpoint import load_checkpoint
from zoo.errors import ZooError
from zoo.interfaces import Update


class Tug(zoo.Objective):
    """The ELBO plus a term pushing a 'discriminator' bias down, while the discriminator's own loss
    pushes it up: only its own optimizer (SGD, lr 0.1) may move it, by exactly 0.1 a step."""

    def __init__(self, bad: str = ""):
        super().__init__()
        self.critic = nn.Linear(3, 1)
        with torch.no_grad():
            self.critic.weight.zero_()
            self.critic.bias.zero_()
        self.bad = bad

    def updates(self):
        if self.bad == "foreign":
            return [Update("critic", [nn.Parameter(torch.zeros(1))])]
        if self.bad == "optimizer":
            return [Update("critic", self.critic, optimizer="lbfgs-ish")]
        return [Update("critic", self.critic, optimizer="sgd", lr=0.1)]

    def forward(self, model, x):
        terms = model.elbo(x)
        z = model.encoder(x).rsample()
        score = self.critic(z).mean()
        losses = {} if self.bad == "no-loss" else {"critic": -self.critic(z.detach()).mean() + 0 * score}
        return zoo.ObjectiveOutput(-terms.elbo.mean() + score, {"score": score.detach()}, losses)


@pytest.fixture
def registered():
    in_process.forget()
    plugins.reset()
    zoo.register("dataset", random_images.dataset("tug-data"))
    zoo.register("objective", "tug", Tug)
    yield
    in_process.forget()
    plugins.reset()


def _trainer(out, epochs=2, **objective_options):
    model = zoo.compose(
        "deep-mlp", "deep-mlp", "standard-normal", "bernoulli", latent_size=3, data_shape=(1, SIDE, SIDE)
    )
    return zoo.Trainer(
        model, dataset="tug-data", objective="tug", objective_options=objective_options, out=out, device="cpu",
        progress=False, training={"epochs": epochs, "batch_size": 100},
    )  # fmt: skip


def test_each_loss_trains_only_its_own_parameters(registered, tmp_path):
    trainer = _trainer(tmp_path / "run")
    history = trainer.fit()
    # 4 steps an epoch, 2 epochs: the critic's SGD moved the bias up by 0.1 a step; the model's
    # optimizer, which would push it down, never held it.
    assert trainer.objective.critic.bias.item() == pytest.approx(0.8, abs=1e-6)
    assert all(p is not trainer.objective.critic.bias for g in trainer.optimizer.param_groups for p in g["params"])
    assert "train_loss_critic" in history[-1] and "train_score" in history[-1]
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert set(payload["updates"]) == {"critic"}


def test_a_resume_restores_every_optimizer_exactly(registered, tmp_path):
    whole = _trainer(tmp_path / "whole")
    whole.fit()
    _trainer(tmp_path / "half", epochs=1).fit()
    resumed = zoo.Trainer.resume(tmp_path / "half", epochs=2)
    resumed.fit()

    def rows(run):
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert [r["train_loss"] for r in rows(tmp_path / "half")] == [r["train_loss"] for r in rows(tmp_path / "whole")]
    assert torch.equal(resumed.objective.critic.bias, whole.objective.critic.bias)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("foreign", "not the objective's own"),
        ("optimizer", "use one of adam, adamw, sgd, rmsprop, adagrad"),
        ("no-loss", "returned no loss for them"),
    ],
)
def test_mistakes_in_updates_are_one_line_errors(registered, tmp_path, bad, message):
    with pytest.raises(ZooError, match=message) as caught:
        _trainer(tmp_path / "run", bad=bad).fit()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("optimizer", "options", "fused"),
    [("adam", {}, True), ("adamw", {}, True), ("adam", {"foreach": False}, None), ("adam", {"fused": False}, False),
     ("sgd", {}, None)],
)  # fmt: skip
def test_an_updates_adam_runs_fused_unless_its_options_say_otherwise(optimizer, options, fused):
    from zoo.updates import Updates

    class Critic(zoo.Objective):
        def __init__(self):
            super().__init__()
            self.critic = nn.Linear(3, 1)

        def updates(self):
            return [Update("critic", self.critic, optimizer=optimizer, options=options)]

    updates = Updates(Critic(), nn.Linear(2, 2), lr=1e-3)
    assert updates.optimizers["critic"].defaults.get("fused") is fused
