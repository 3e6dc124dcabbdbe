"""The third-party example plugin in examples/zoo-mlp, installed the way a user installs it
(``pip install --target`` into a temporary folder put on the path; see
helpers_example_plugin.py). Nothing in zoo changes for it to be found."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from helpers_example_plugin import EXAMPLE
from helpers_steps import assert_one_step_moves_every_parameter

import zoo
from zoo import plugins
from zoo.checkpoint import load_checkpoint


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
    assert registry.get("prior", "mini-vamp").plugin == "mlp"
    assert registry.get("objective", "cyclical-elbo").plugin == "mlp"
    assert "vae-mlp-vamp-mnist" in zoo.list_models("vae-mlp-*")


def test_not_loaded_unless_enabled(example_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_site))
    plugins.reset()  # ZOO_PLUGINS=OWN_PLUGINS from conftest: zoo's own plugins, not mlp
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
    model = zoo.compose(
        "mlp",
        "conv-mnist",
        likelihood="continuous-bernoulli",
        latent_size=8,
        encoder_options={"hidden": 64, "activation": "relu"},
    )
    assert isinstance(model.encoder.net[2], torch.nn.ReLU)
    assert torch.isfinite(model(torch.rand(4, 1, 28, 28)).elbo).all()
    learned = zoo.compose(
        "conv-mnist",
        "mlp",
        likelihood="gaussian",
        likelihood_options={"variance": "learned"},
        latent_size=8,
        decoder_options={"hidden": 32},
    )
    assert learned.decoder(torch.zeros(5, 8)).shape == (5, 2, 28, 28)
    with pytest.raises(zoo.ZooError, match="activation must be one of"):
        zoo.compose("mlp", "mlp", latent_size=8, encoder_options={"activation": "sigmoid"})


def test_cli_lists_it_in_a_fresh_process(example_site):
    env = dict(
        os.environ,
        ZOO_PLUGINS="aevb,mlp",
        PYTHONPATH=os.pathsep.join(filter(None, [str(example_site), os.environ.get("PYTHONPATH")])),
    )
    # The three commands at once: each one's time goes mostly to starting Python.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "zoo.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for args in (["list", "--json"], ["info", "vae-mlp-mnist"], ["info", "vae-mlp-vamp-mnist"])
    ]
    try:
        (listed, listed_err), (info, info_err), (vamp, vamp_err) = (proc.communicate(timeout=60) for proc in procs)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert procs[0].returncode == 0, listed_err
    models = {m["id"]: m for m in json.loads(listed)}
    assert models["vae-mlp-mnist"]["plugin"] == "mlp"
    assert procs[1].returncode == 0, info_err
    assert "vae-mlp-mnist  (plugin mlp)" in info
    assert "zoo_mlp.components:MLPEncoder" in info
    assert "standard-normal  [plugin aevb" in info
    assert procs[2].returncode == 0, vamp_err
    assert "(receives the model's encoder)" in vamp
    assert "objective:   cyclical-elbo  [plugin mlp, zoo_mlp.objectives:CyclicalELBO]" in vamp


# -- the VampPrior (a prior that receives the encoder) and the cyclical ELBO -------------------

SMALL = {"encoder.hidden": 16, "decoder.hidden": 16, "prior.pseudo_inputs": 4}


def test_the_vamp_prior_mixes_the_models_own_encoder(with_example):
    torch.manual_seed(0)
    model = zoo.create("vae-mlp-vamp-mnist", **SMALL)
    assert type(model.prior).__module__ == "zoo_mlp.vamp"
    assert model.prior.encoder is model.encoder
    # Each weight is stored once: the encoder under encoder.*, never again under prior.encoder.*.
    keys = set(model.state_dict())
    assert "prior.pseudo_logits" in keys and not any(k.startswith("prior.encoder.") for k in keys)
    p = model.prior()
    assert isinstance(p, torch.distributions.MixtureSameFamily)
    assert p.mixture_distribution.logits.shape == (4,)
    z = torch.randn(5, 20)
    expected = torch.logsumexp(model.encoder(model.prior.pseudo_inputs()).log_prob(z.unsqueeze(1)), 1) - math.log(4)
    assert torch.allclose(p.log_prob(z), expected, atol=1e-5)
    x = torch.rand(8, 1, 28, 28)
    assert torch.isfinite(model.elbo(x).elbo).all() and torch.isfinite(model.iwae(x, samples=3)).all()
    assert model.sample(3).shape == (3, 1, 28, 28)
    with pytest.raises(zoo.ZooError, match="pseudo_inputs must be at least 1"):
        zoo.create("vae-mlp-vamp-mnist", **{"prior.pseudo_inputs": 0})
    with pytest.raises(zoo.ZooError, match="'encoder' is the model's own component"):
        zoo.compose("mlp", "mlp", "mini-vamp", latent_size=4, prior_options={"encoder": "mlp"})


def test_the_cyclical_elbo_trains_every_parameter(with_example):
    torch.manual_seed(0)
    model = zoo.create("vae-mlp-vamp-mnist", **SMALL)
    recipe = zoo.get_recipe("vae-mlp-vamp-mnist")
    assert (recipe.objective, recipe.objective_options) == ("cyclical-elbo", {"period": 15000, "ratio": 0.5})
    objective, record = zoo.build_objective("cyclical-elbo", {"period": 4, "ratio": 0.5})
    assert (record["id"], record["plugin"], record["options"]) == ("cyclical-elbo", "mlp", {"period": 4, "ratio": 0.5})
    x = torch.rand(16, 1, 28, 28)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    weights = []
    for _ in range(5):
        loss, logs = objective(model, x)
        assert torch.isfinite(loss) and {"recon", "kl", "kl_weight"} <= set(logs)
        weights.append(float(logs["kl_weight"]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert weights == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.0])  # the ramp, then a new cycle
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))  # pseudo-inputs too
    objective.eval()
    objective(model, x)
    assert int(objective.steps) == 5  # evaluation does not advance the schedule
    for bad in ({"period": 0}, {"ratio": 0.0}, {"ratio": 1.5}):
        with pytest.raises(zoo.ZooError):
            zoo.build_objective("cyclical-elbo", bad)


def _tiny_images(root, split, download):
    g = torch.Generator().manual_seed(1 if split == "train" else 2)
    n = 200 if split == "train" else 100
    return (torch.rand(n, 1, 28, 28, generator=g) * 255).round().to(torch.uint8), torch.zeros(n, dtype=torch.long)


def _tiny_data_plugin():
    @zoo.hookimpl
    def register_datasets(register):
        register(
            zoo.DatasetInfo(
                "tiny-noise", "200 noise images", (1, 28, 28), _tiny_images, {}, {"train": 200, "test": 100}
            )
        )

    return types.SimpleNamespace(register_datasets=register_datasets)


def test_the_vamp_recipe_trains_by_id_and_resumes_its_schedule(with_example, tmp_path):
    registry, pm = plugins.build(plugins=[("tiny-data", _tiny_data_plugin())])
    with plugins.using(registry, pm):
        settings = {**SMALL, "dataset": "tiny-noise", "batch_size": 50, "objective.period": 6}
        run = dict(device="cpu", progress=False)
        history = zoo.Trainer(
            "vae-mlp-vamp-mnist", overrides={**settings, "epochs": 2}, out=tmp_path / "a", **run
        ).fit()
        assert {"train_recon", "train_kl", "train_kl_weight", "test_loss"} <= set(history[0])
        assert all(math.isfinite(v) for row in history for v in row.values())
        zoo.Trainer("vae-mlp-vamp-mnist", overrides={**settings, "epochs": 1}, out=tmp_path / "b", **run).fit()
        zoo.Trainer.resume(tmp_path / "b", epochs=2, progress=False).fit()
        a, b = (load_checkpoint(tmp_path / name) for name in ("a", "b"))
        assert int(a["objective"]["steps"]) == int(b["objective"]["steps"]) == 8  # 4 steps per epoch
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert a["spec"]["objective"]["id"] == "cyclical-elbo" and a["spec"]["components"]["prior"]["id"] == "mini-vamp"
        loaded = zoo.load(tmp_path / "a")
        assert loaded.prior.encoder is loaded.encoder
