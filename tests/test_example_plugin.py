"""The third-party example plugin in examples/zoo-mlp, installed the way a user installs it
(``pip install --target`` into a temporary folder put on the path; see
helpers_example_plugin.py). Nothing in zoo changes for it to be found."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from helpers_example_plugin import EXAMPLE
from helpers_steps import assert_one_step_moves_every_parameter
from zoo import plugins


def test_it_is_a_separate_distribution():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert 'name = "zoo-mlp"' in text
    assert "[project.entry-points.zoo]" in text and 'mlp = "zoo_mlp.plugin"' in text


def test_it_imports_only_zoos_public_api():
    for path in (EXAMPLE / "zoo_mlp").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "zoo", f"{path.name}: from {node.module} import ..."
                assert not node.module.startswith("zoo_aevb"), path.name
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name == "zoo" or not alias.name.startswith(("zoo.", "zoo_aevb")), path.name


def test_listed_once_installed(with_example):
    assert "vae-mlp-mnist" in zoo.list_models()
    assert "vae-mlp-mnist" in zoo.list_models("vae-mlp-*")
    registry = plugins.get_registry()
    info = registry.plugins["mlp"]
    assert info.error is None
    assert (info.distribution, info.version) == ("zoo-mlp", "0.1.0")
    assert registry.get("encoder", "mlp").plugin == "mlp"
    assert registry.get("prior", "standard-normal").plugin == "aevb"


def test_not_loaded_unless_enabled(example_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_site))
    plugins.reset()  # ZOO_PLUGINS=aevb from conftest
    assert "vae-mlp-mnist" not in zoo.list_models()


def test_composes_and_trains_a_step(with_example):
    torch.manual_seed(0)
    model = zoo.create("vae-mlp-mnist")
    import zoo_mlp

    assert Path(zoo_mlp.__file__).is_relative_to(with_example)  # the installed copy, not the source
    assert type(model.encoder).__module__ == "zoo_mlp.components"
    assert model.latent_size == 20
    assert model.encoder.net[1].out_features == 500 and isinstance(model.encoder.net[2], torch.nn.Tanh)
    assert model.decoder.output_shape == (1, 28, 28)
    recipe = zoo.get_recipe("vae-mlp-mnist")
    assert (recipe.training.optimizer, recipe.training.batch_size, recipe.dataset) == ("adam", 100, "mnist")

    x = torch.rand(16, 1, 28, 28)
    assert_one_step_moves_every_parameter(model, x, lr=recipe.training.lr)
    assert torch.isfinite(model.iwae(x, samples=4)).all()
    assert model.sample(3).shape == (3, 1, 28, 28)


def test_options_and_mixing_with_reference_components(with_example):
    model = zoo.compose("mlp", "conv-mnist", likelihood="continuous-bernoulli", latent_size=8,
                        encoder_options={"hidden": 64, "activation": "relu"})
    assert isinstance(model.encoder.net[2], torch.nn.ReLU)
    assert torch.isfinite(model(torch.rand(4, 1, 28, 28)).elbo).all()
    learned = zoo.compose("conv-mnist", "mlp", likelihood="gaussian", likelihood_options={"variance": "learned"},
                          latent_size=8, decoder_options={"hidden": 32})
    assert learned.decoder(torch.zeros(5, 8)).shape == (5, 2, 28, 28)
    with pytest.raises(zoo.ZooError, match="activation must be one of"):
        zoo.compose("mlp", "mlp", latent_size=8, encoder_options={"activation": "sigmoid"})


def test_cli_lists_it_in_a_fresh_process(example_site):
    env = dict(os.environ, ZOO_PLUGINS="aevb,mlp",
               PYTHONPATH=os.pathsep.join(filter(None, [str(example_site), os.environ.get("PYTHONPATH")])))
    listed = subprocess.run([sys.executable, "-m", "zoo.cli", "list", "--json"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    models = {m["id"]: m for m in json.loads(listed.stdout)}
    assert models["vae-mlp-mnist"]["plugin"] == "mlp"
    info = subprocess.run([sys.executable, "-m", "zoo.cli", "info", "vae-mlp-mnist"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert info.returncode == 0, info.stderr
    assert "vae-mlp-mnist  (plugin mlp)" in info.stdout
    assert "zoo_mlp.components:MLPEncoder" in info.stdout
    assert "standard-normal  [plugin aevb" in info.stdout
