"""zoo.register: a component defined in a script trains, checkpoints and reloads in any process that
registers it the same way, without a package; a process that does not gets a one-line error."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import zoo
from zoo import in_process, plugins
from zoo.errors import ZooError

SCRIPT = textwrap.dedent(
    '''
    import sys
    import torch
    from torch import nn
    import zoo

    class MyEncoder(zoo.Encoder):
        """A one-layer MLP encoder defined in a script."""

        def __init__(self, latent_size, data_shape, hidden=32):
            super().__init__()
            self.latent_size = latent_size
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent_size))

        def forward(self, x):
            mean, log_var = self.net(x).chunk(2, dim=1)
            return zoo.diagonal_gaussian(mean, log_var)

    if sys.argv[1] != "unregistered":
        zoo.register("encoder", "my-mlp", MyEncoder)

    if sys.argv[1] == "train":
        mine = zoo.compose(MyEncoder(latent_size=4, data_shape=(1, 28, 28), hidden=16), "conv-mnist",
                           "standard-normal", "bernoulli", latent_size=4)
        zoo.Trainer(mine, dataset="mnist", out=sys.argv[2], device="cpu", data_dir=sys.argv[3],
                    training={"epochs": 1, "batch_size": 500}, max_steps=2, progress=False).fit()
        torch.save(zoo.load(sys.argv[2]).encoder.net[1].weight, sys.argv[2] + "/w.pt")
    else:
        model = zoo.load(sys.argv[2])
        same = torch.equal(model.encoder.net[1].weight, torch.load(sys.argv[2] + "/w.pt"))
        print("loaded", type(model.encoder).__name__, model.encoder.net[1].out_features, same)
    '''
)


@pytest.fixture
def clean():
    in_process.forget()
    plugins.reset()
    yield
    in_process.forget()
    plugins.reset()


def _run(tmp_path, *args):
    script = tmp_path / "notebook.py"
    script.write_text(SCRIPT)
    env = {"ZOO_PLUGINS": "aevb", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_a_script_registered_encoder_trains_and_reloads_where_it_is_registered(tmp_path, data_root):
    run = tmp_path / "run"
    done = _run(tmp_path, "train", run, data_root)
    assert done.returncode == 0, done.stderr
    loaded = _run(tmp_path, "load", run)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["loaded", "MyEncoder", "16", "True"]
    refused = _run(tmp_path, "unregistered", run)
    assert refused.returncode != 0
    assert "zoo.register('encoder', 'my-mlp', ...)" in refused.stderr


def test_register_as_a_decorator_and_again_from_the_same_process(clean):
    @zoo.register("likelihood", "plain-bernoulli")
    class PlainBernoulli(zoo.Likelihood):
        """A Bernoulli with no options and no __init__ of its own."""

        def forward(self, params):
            return torch.distributions.Independent(torch.distributions.Bernoulli(logits=params), 3)

    model = zoo.compose("conv-mnist", "conv-mnist", "standard-normal", "plain-bernoulli", latent_size=4)
    assert isinstance(model.likelihood, PlainBernoulli)
    assert model.spec["components"]["likelihood"]["plugin"] == "in-process"
    assert "plain-bernoulli" in zoo.list_components("likelihood")

    class Again(PlainBernoulli):
        pass

    zoo.register("likelihood", "plain-bernoulli", Again)  # a re-run notebook cell replaces it
    plugins.reset()  # and a rebuilt registry keeps it
    built = zoo.compose("conv-mnist", "conv-mnist", "standard-normal", "plain-bernoulli", latent_size=4)
    assert type(built.likelihood) is Again


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("encoder", "conv-mnist", torch.nn.Linear), "already registered by plugin 'aevb'"),
        (("encoders", "x", torch.nn.Linear), "unknown kind 'encoders'"),
        (("encoder", "My_Encoder", torch.nn.Linear), "kebab-case"),
        (("encoder", 3, torch.nn.Linear), "kebab-case string"),
        (("encoder", "not-an-encoder", torch.nn.Linear), "zoo.Encoder"),
    ],
)
def test_register_mistakes_are_one_line_errors(clean, monkeypatch, args, message):
    monkeypatch.setenv("ZOO_PLUGINS", "aevb")
    plugins.reset()
    with pytest.raises(ZooError, match=message) as caught:
        zoo.register(*args)
    assert "\n" not in str(caught.value)


def test_a_class_with_no_init_of_its_own_is_built_by_id(clean):
    class NoOptions(zoo.Likelihood):
        def forward(self, params):
            return torch.distributions.Independent(torch.distributions.Bernoulli(logits=params), 3)

    zoo.register("likelihood", "no-options", NoOptions)
    assert zoo.factory_options(NoOptions) == []
    model = zoo.compose("conv-mnist", "conv-mnist", "standard-normal", "no-options", latent_size=4)
    assert isinstance(model.likelihood, NoOptions)
