"""The tutorial's second example package, examples/zoo-vqladder, installed the way a user installs
it (``pip install --target`` into a temporary folder put on the path): its conformance kit runs as
the documented one-line test, its quantised encoder trains its codebook under any objective, and
its ladder encoder and prior only come together."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import helpers_random_images as random_images
import pytest
import torch
from conftest import OWN_PLUGINS

import zoo
from zoo import plugins

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "examples" / "zoo-vqladder"
TUTORIAL = ROOT / "docs" / "writing-a-plugin.md"
SMALL = {"encoder.hidden": 16, "decoder.hidden": 16}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """zoo-vqladder pip-installed (offline, no build isolation) into a folder, once for this module."""
    work = tmp_path_factory.mktemp("zoo-vqladder")
    source = work / "src"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
    command += ["--disable-pip-version-check", "--quiet", "--target", str(target), str(source)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip could not install {PACKAGE.name}:\n{proc.stdout}{proc.stderr}"
    return target


@pytest.fixture
def installed(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ZOO_PLUGINS", OWN_PLUGINS + ",vqladder")
    plugins.reset()
    yield site
    plugins.reset()
    for name in [m for m in sys.modules if m == "zoo_vqladder" or m.startswith("zoo_vqladder.")]:
        del sys.modules[name]


def test_the_tutorial_shows_the_kit_test_as_it_is():
    text = TUTORIAL.read_text()
    shown = re.search(r"<!-- example: examples/zoo-vqladder/tests/test_conformance.py -->\n```py\n(.*?)```", text, re.S)
    assert shown, "docs/writing-a-plugin.md does not show examples/zoo-vqladder/tests/test_conformance.py"
    assert shown.group(1) == (PACKAGE / "tests" / "test_conformance.py").read_text()


def test_its_conformance_kit_is_the_documented_one_line_test(site):
    """The package's own tests folder, run by pytest in a fresh process with only the package installed:
    every check passes, the ladder encoder's checks with its partner prior, with no patching."""
    env = dict(
        os.environ,
        ZOO_PLUGINS="aevb,vqladder",
        PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(PACKAGE),
            str(PACKAGE / "tests"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=PACKAGE,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", proc.stdout).group(1))
    assert passed >= 20 and "failed" not in proc.stdout


def test_the_quantised_encoder_trains_its_codebook_under_every_objective(installed, tmp_path):
    zoo.register("dataset", "random-8x8", random_images.dataset("random-8x8"))
    for objective in ("elbo", "iwae", "ae"):
        torch.manual_seed(0)
        settings = {**SMALL, "dataset": "random-8x8", "batch_size": 50, "objective": objective, "epochs": 3}
        trainer = zoo.Trainer(
            "vq-mlp-mnist", overrides=settings, out=tmp_path / objective, device="cpu", progress=False
        )
        start = trainer.model.encoder.codebook.detach().clone()
        trainer.fit()
        rows = [json.loads(line) for line in (tmp_path / objective / "metrics.jsonl").read_text().splitlines()]
        codebook = [row["train_aux_codebook"] for row in rows if "train_aux_codebook" in row]
        assert len(codebook) == 3 and codebook[-1] < codebook[0], (objective, codebook)
        assert all("train_aux_commitment" in row for row in rows if "train_aux_codebook" in row)
        assert not torch.equal(start, zoo.load(tmp_path / objective).encoder.codebook), objective


def test_the_ladder_prior_reads_the_encoders_top_down_layer(installed):
    torch.manual_seed(0)
    model = zoo.create("ladder-vae-mnist", **SMALL)
    assert model.prior.encoder is model.encoder
    assert not any(k.startswith("prior.") for k, _ in model.named_parameters())  # the prior owns no weights
    assert not any(k.startswith("prior.encoder.") for k in model.state_dict())
    assert model.encoder.layout == {"z1": 32, "z2": 16}
    x = torch.rand(8, 1, 28, 28)
    q = model.encoder(x)
    z = q.rsample()
    parts = q.split(z)
    assert parts["z1"].shape == (8, 32) and parts["z2"].shape == (8, 16)
    expected = torch.distributions.Normal(0, 1).log_prob(parts["z2"]).sum(1) + model.encoder.p_z1(parts["z2"]).log_prob(
        parts["z1"]
    )
    assert torch.allclose(model.prior.log_prob(z), expected, atol=1e-5)
    assert torch.isfinite(model.elbo(x).elbo).all() and torch.isfinite(model.iwae(x, samples=3)).all()
    assert model.sample(3).shape == (3, 1, 28, 28)
    with pytest.raises(zoo.ZooError, match=r"encoder 'ladder' must be composed with prior 'ladder'"):
        zoo.compose("ladder", "aevb-mlp", "standard-normal", latent_size=8)
    with pytest.raises(zoo.ZooError, match="top must leave at least one latent"):
        zoo.create("ladder-vae-mnist", **{"encoder.top": 48})


def test_the_ladder_model_trains(installed, tmp_path):
    zoo.register("dataset", "random-8x8", random_images.dataset("random-8x8"))
    torch.manual_seed(0)
    settings = {**SMALL, "dataset": "random-8x8", "batch_size": 50, "epochs": 2, "latent_size": 6, "encoder.top": 2}
    history = zoo.Trainer(
        "ladder-vae-mnist", overrides=settings, out=tmp_path / "run", device="cpu", progress=False
    ).fit()
    assert all(math.isfinite(row["test_loss"]) for row in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert zoo.load(tmp_path / "run").prior.encoder.layout == {"z1": 4, "z2": 2}


def test_mistakes_are_one_line_errors(installed):
    with pytest.raises(zoo.ZooError, match=r"latent_size \(10\) must be a multiple of dim \(4\)"):
        zoo.create("vq-mlp-mnist", **{"latent_size": 10})
    with pytest.raises(zoo.ZooError, match="codebook_size must be at least 2"):
        zoo.create("vq-mlp-mnist", **{"encoder.codebook_size": 1})
