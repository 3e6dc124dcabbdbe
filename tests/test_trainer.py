"""The trainer, end to end on a tiny data set: run directory, checkpoints, resume, DDP, CLI.

A throwaway plugin (:data:`TINY_PLUGIN`, written to a temporary folder) registers tiny data sets
of random-ish 28x28 images and recipes built from the reference components, so every test goes
through the real code paths in seconds. In-process tests register it with
``zoo.plugins.build(plugins=...)``; subprocesses (torchrun) find it as an installed entry point.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import zoo
import zoo.objectives
import zoo.trainer
from zoo import plugins
from zoo.batches import DeviceData
from zoo.checkpoint import load_checkpoint
from zoo.cli import main
from zoo.cuda_graphs import GraphedStep
from zoo.devices import resolve_device, resolve_precision, seed_everything
from zoo.distributed import Dist
from zoo.errors import ZooError, is_count
from zoo.trainer import Trainer

PLUGIN_MODULE = "zoo_trainer_tiny"
PLUGIN_NAME = "tinytrain"

TINY_PLUGIN = '''
"""Test plugin (tests/test_trainer.py): tiny data sets and recipes that train in about a second."""
import zoo
from zoo.data import DatasetInfo


def load(root, split, download, train=200, test=100):
    """Noisy copies of 8 random prototypes, uint8 [N, 1, 28, 28]: something to learn, quickly."""
    import torch

    prototypes = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(42))
    g = torch.Generator().manual_seed(1 if split == "train" else 2)
    n = train if split == "train" else test
    labels = torch.randint(0, 8, (n,), generator=g)
    images = (0.8 * prototypes[labels] + 0.2 * torch.rand(n, 1, 28, 28, generator=g)) * 255
    return images.round().to(torch.uint8), labels


def nan_encoder(latent_size, data_shape, channels=4, nan_after=0):
    """The reference conv encoder, whose posterior turns NaN after `nan_after` training passes."""
    from torch.distributions import Independent, Normal
    from zoo_aevb.components import ConvEncoder

    class NanEncoder(ConvEncoder):
        cuda_graph_safe = False  # its pass counter lives in Python

        def __init__(self):
            super().__init__(latent_size, data_shape, channels)
            self.calls = 0

        def forward(self, x):
            q = super().forward(x)
            if self.training:
                self.calls += 1
                if nan_after and self.calls > nan_after:
                    base = q.base_dist
                    return Independent(Normal(base.loc * float("nan"), base.scale, validate_args=False), 1,
                                       validate_args=False)
            return q

    return NanEncoder()


@zoo.hookimpl
def register_datasets(register):
    register(DatasetInfo("tiny", "200 train / 100 test noisy prototypes", (1, 28, 28), load, {},
                         {"train": 200, "test": 100}))
    register(DatasetInfo("tiny-mini", "100 train / 50 test noisy prototypes", (1, 28, 28), load,
                         {"train": 100, "test": 50}, {"train": 100, "test": 50}))
    register(DatasetInfo("tiny-micro", "50 train / 20 test noisy prototypes", (1, 28, 28), load,
                         {"train": 50, "test": 20}, {"train": 50, "test": 20}))


@zoo.hookimpl
def register_encoders(register):
    register("nan-after", nan_encoder, description="conv-mnist that turns NaN after nan_after training passes")


_SMALL = dict(decoder="conv-mnist", decoder_options={"channels": 4}, prior="standard-normal",
              likelihood="bernoulli", latent_size=4)


@zoo.hookimpl
def register_recipes(register):
    register(zoo.Recipe(id="tiny-vae", encoder="conv-mnist", encoder_options={"channels": 4}, dataset="tiny",
                        training=zoo.Training(epochs=1, batch_size=50), **_SMALL))
    register(zoo.Recipe(id="tiny-mini-vae", encoder="conv-mnist", encoder_options={"channels": 4},
                        dataset="tiny-mini", training=zoo.Training(epochs=1, batch_size=50), **_SMALL))
    register(zoo.Recipe(id="tiny-micro-vae", encoder="conv-mnist", encoder_options={"channels": 4},
                        dataset="tiny-micro", training=zoo.Training(epochs=1, batch_size=50), **_SMALL))
    register(zoo.Recipe(id="tiny-nan-vae", encoder="nan-after", encoder_options={"channels": 4, "nan_after": 3},
                        dataset="tiny-mini", training=zoo.Training(epochs=2, batch_size=50), **_SMALL))
'''

METRIC_KEYS = {"epoch", "train_loss", "test_loss", "test_recon", "test_kl", "epoch_seconds", "images_per_second", "lr"}
GRID_SIDE = 8 * 28 + 9 * 2  # 8 images of 28 pixels per row, 2-pixel padding (torchvision's make_grid)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory) -> Path:
    """A folder holding the tiny plugin as an installed distribution (module + dist-info)."""
    site = tmp_path_factory.mktemp("site")
    (site / f"{PLUGIN_MODULE}.py").write_text(textwrap.dedent(TINY_PLUGIN))
    info = site / "zoo_trainer_tiny-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-trainer-tiny\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[zoo]\n{PLUGIN_NAME} = {PLUGIN_MODULE}\n")
    return site


@pytest.fixture(scope="module")
def tiny_zoo(tiny_site):
    """A registry with the reference plugin and the tiny plugin (built once for the module)."""
    sys.path.insert(0, str(tiny_site))
    try:
        import importlib

        module = importlib.import_module(PLUGIN_MODULE)
        registry, pm = plugins.build(plugins=[(PLUGIN_NAME, module)])
        assert registry.plugins[PLUGIN_NAME].error is None, registry.plugins[PLUGIN_NAME].error
        yield registry, pm
    finally:
        sys.path.remove(str(tiny_site))
        sys.modules.pop(PLUGIN_MODULE, None)


@pytest.fixture
def tiny(tiny_zoo):
    """Make the tiny registry the process-wide one for this test."""
    with plugins.using(*tiny_zoo) as registry:
        yield registry


def cli(*args: str) -> None:
    """Run ``zoo ARGS`` in this process; a failure raises SystemExit with its exit code."""
    main([str(a) for a in args])


def cli_error(capsys, *args: str) -> str:
    """Run ``zoo ARGS``, expect a one-line ``Error:`` and exit code 1; return the message."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli(*args)
    err = capsys.readouterr().err
    assert exited.value.code == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, err
    return errors[0]


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def files_in(run: Path) -> set[str]:
    """zoo's own files in a run (TensorBoard's event files, named by host and time, left out)."""
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and p.parent.name != "tensorboard"}


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_zoo):
    """The runs several tests look at, trained once.

    ``a``: 2 epochs uninterrupted (Python API); ``b1``: 1 epoch (CLI), as it was after that epoch;
    ``b``: the same run resumed to 2 epochs with ``Trainer.resume``.
    """
    root = tmp_path_factory.mktemp("runs")
    with plugins.using(*tiny_zoo):
        a = Trainer("tiny-vae", overrides={"epochs": 2}, out=root / "a", device="cpu", seed=0, progress=False)
        a.fit()
        cli(
            "train",
            "tiny-vae",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--seed",
            "0",
            "--no-progress",
            "--set",
            "latent_size=4",
            "--out",
            root / "b",
        )
        shutil.copytree(root / "b", root / "b1")
        resumed = Trainer.resume(root / "b", epochs=2, progress=False)
        resumed.fit()
    return {"root": root, "a": root / "a", "b": root / "b", "b1": root / "b1", "trainer_a": a, "resumed": resumed}


# -- the run directory ------------------------------------------------------------------------


def test_run_directory_contents(runs):
    assert files_in(runs["b1"]) == {
        "config.json",
        "metrics.jsonl",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "samples/epoch-001.png",
        "reconstructions/epoch-001.png",
    }
    assert files_in(runs["a"]) == files_in(runs["b1"]) | {"samples/epoch-002.png", "reconstructions/epoch-002.png"}


def test_config_json(runs):
    config = json.loads((runs["b1"] / "config.json").read_text())
    assert {"model", "recipe", "overrides", "settings", "resolved", "versions"} <= set(config)
    assert config["model"] == "tiny-vae"
    assert config["overrides"] == {"latent_size": "4", "epochs": 1}
    assert config["recipe"]["id"] == "tiny-vae" and config["recipe"]["dataset"] == "tiny"
    assert config["recipe"]["training"]["epochs"] == 1 and config["recipe"]["training"]["batch_size"] == 50
    assert config["settings"]["seed"] == 0 and config["settings"]["device"] == "cpu"
    threads = config["resolved"].pop("threads")
    assert is_count(threads) and threads <= (os.cpu_count() or 1)
    assert config["resolved"] == {
        "device": "cpu",
        "precision": "fp32",
        "world_size": 1,
        "cuda_graph": False,
        "precision_trial": None,
        "data_placement": "device",
    }
    versions = config["versions"]
    assert versions["zoo"] == zoo.__version__ and versions["torch"] == torch.__version__
    assert {"torchvision", "python", "plugins"} <= set(versions)
    assert versions["plugins"]["aevb"] == {"distribution": "zoo", "version": zoo.__version__}
    assert PLUGIN_NAME in versions["plugins"]


def test_metrics_jsonl(runs):
    rows = read_metrics(runs["a"])
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        assert set(row) >= METRIC_KEYS
        assert all(math.isfinite(row[key]) for key in METRIC_KEYS)
        assert row["test_loss"] == pytest.approx(row["test_recon"] + row["test_kl"], rel=1e-5)
        assert row["test_kl"] >= 0 and row["epoch_seconds"] > 0 and row["lr"] == 1e-3
        assert row["images_per_second"] == pytest.approx(200 / row["epoch_seconds"], rel=1e-6)
    assert rows[1]["train_loss"] < rows[0]["train_loss"]


def test_checkpoints_load_with_weights_only(runs):
    rows = read_metrics(runs["a"])
    for name in ("last.pt", "best.pt"):
        payload = torch.load(runs["a"] / "checkpoints" / name, weights_only=True)
        assert {"format", "spec", "model", "optimizer", "epoch", "rng", "history", "config"} <= set(payload)
    last = torch.load(runs["a"] / "checkpoints" / "last.pt", weights_only=True)
    best = torch.load(runs["a"] / "checkpoints" / "best.pt", weights_only=True)
    assert last["epoch"] == 2 and last["history"] == rows
    assert rows[best["epoch"] - 1]["test_loss"] == min(row["test_loss"] for row in rows)
    assert not [p for p in runs["a"].rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_images_are_png_grids(runs):
    for sub in ("samples", "reconstructions"):
        assert png_size(runs["b1"] / sub / "epoch-001.png") == (GRID_SIDE, GRID_SIDE)


def test_reconstruction_grid_shows_test_images_above_reconstructions(runs, tiny):
    from PIL import Image

    images, _ = plugins.get_registry().get("dataset", "tiny").load().load("test")
    with Image.open(runs["b1"] / "reconstructions" / "epoch-001.png") as png:
        grid = torch.frombuffer(bytearray(png.convert("L").tobytes()), dtype=torch.uint8).reshape(png.height, png.width)
    for row in range(4):  # rows 0, 2, 4, 6 are test images 0-7, 8-15, ...
        for col in range(8):
            top, left = 2 + 2 * row * 30, 2 + col * 30
            assert torch.equal(grid[top : top + 28, left : left + 28], images[8 * row + col, 0])


def test_data_is_held_on_the_device_as_uint8(runs):
    trainer = runs["trainer_a"]
    assert trainer.train_data.images.dtype == torch.uint8 and trainer.train_data.images.device.type == "cpu"
    assert len(trainer.train_data) == 200 and len(trainer.test_data) == 100


def test_zoo_load_rebuilds_the_model(runs, tiny):
    trainer = runs["trainer_a"]
    model = zoo.load(runs["a"])
    assert isinstance(model, zoo.VAE) and not model.training
    assert model.spec["components"]["encoder"]["id"] == "conv-mnist"
    trained = {k: v for k, v in trainer.model.state_dict().items()}
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    x = torch.rand(16, 1, 28, 28)
    trainer.model.eval()
    torch.testing.assert_close(model.reconstruct(x), trainer.model.reconstruct(x))
    torch.manual_seed(5)
    mine = model(x)
    torch.manual_seed(5)
    theirs = trainer.model(x)
    torch.testing.assert_close(mine.elbo, theirs.elbo)


def test_zoo_sample_writes_a_png_of_n_images(runs, tiny, tmp_path, capsys):
    out = tmp_path / "grid.png"
    cli("sample", runs["b1"], "--n", "10", "--out", out)
    assert capsys.readouterr().out.strip() == str(out)
    assert png_size(out) == (GRID_SIDE, 2 * 28 + 3 * 2)  # 10 images: a row of 8 and a row of 2
    cli("sample", runs["b1"] / "checkpoints" / "best.pt", "--n", "3", "--out", tmp_path / "three.png", "--seed", "1")
    assert png_size(tmp_path / "three.png") == (3 * 28 + 4 * 2, 28 + 2 * 2)


def test_zoo_sample_errors(runs, tiny, tmp_path, capsys):
    assert "--n must be from 1 to" in cli_error(capsys, "sample", runs["b1"], "--n", "0")
    assert "--n must be from 1 to 10000" in cli_error(capsys, "sample", runs["b1"], "--n", str(10**12))
    assert "does not exist" in cli_error(capsys, "sample", tmp_path / "nope")
    assert "without checkpoints/last.pt" in cli_error(capsys, "sample", tmp_path)


# -- resume and determinism -------------------------------------------------------------------


def test_resume_ends_where_an_uninterrupted_run_ends(runs):
    """2 epochs straight vs 1 epoch + resume: bit-identical parameters and optimizer state on CPU."""
    straight = load_checkpoint(runs["a"] / "checkpoints" / "last.pt")
    resumed = load_checkpoint(runs["b"] / "checkpoints" / "last.pt")
    assert straight["epoch"] == resumed["epoch"] == 2
    assert straight["model"].keys() == resumed["model"].keys()
    for key in straight["model"]:
        assert torch.equal(straight["model"][key], resumed["model"][key]), key
    a_opt, b_opt = straight["optimizer"], resumed["optimizer"]
    assert a_opt["param_groups"] == b_opt["param_groups"]
    assert a_opt["state"].keys() == b_opt["state"].keys()
    for index, state in a_opt["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b_opt["state"][index][name]), (index, name)
    assert torch.equal(straight["rng"][0]["torch"], resumed["rng"][0]["torch"])


def test_resumed_metrics_list_each_epoch_once(runs):
    straight, resumed = read_metrics(runs["a"]), read_metrics(runs["b"])
    assert [row["epoch"] for row in resumed] == [1, 2]
    for a_row, b_row in zip(straight, resumed):
        for key in ("train_loss", "test_loss", "test_recon", "test_kl", "lr"):
            assert a_row[key] == b_row[key], key
    assert files_in(runs["b"]) == files_in(runs["a"])


def test_same_seed_same_run(runs):
    """Runs a (API) and b (CLI) share recipe and seed: their first epochs agree to the last bit."""
    first_a, first_b = read_metrics(runs["a"])[0], read_metrics(runs["b1"])[0]
    for key in ("train_loss", "test_loss", "test_recon", "test_kl"):
        assert first_a[key] == first_b[key], key


def test_seed_sets_initialisation_and_data_order(tiny):
    recipe = zoo.get_recipe("tiny-vae")
    weights = []
    for seed in (0, 0, 1):
        seed_everything(seed)
        weights.append(zoo.from_recipe(recipe).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    data = DeviceData(torch.arange(100, dtype=torch.uint8).reshape(100, 1, 1, 1), torch.device("cpu"), False, Dist())
    orders = {
        (seed, epoch): torch.cat(list(data.train_batches(10, seed, epoch))) for seed in (0, 1) for epoch in (1, 2)
    }
    assert torch.equal(orders[0, 1], torch.cat(list(data.train_batches(10, 0, 1))))
    assert len({tuple(o.flatten().tolist()) for o in orders.values()}) == 4  # new order every epoch and seed


def test_resume_through_the_cli(runs, tiny, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["b1"], run)
    cli("train", "--resume", run, "--epochs", "2", "--no-progress")
    assert [row["epoch"] for row in read_metrics(run)] == [1, 2]
    assert read_metrics(run)[1]["test_loss"] == read_metrics(runs["a"])[1]["test_loss"]
    # Asking for no more epochs than were trained is an error that changes nothing.
    before = (run / "checkpoints" / "last.pt").read_bytes()
    assert "not more than the 2 epochs" in cli_error(capsys, "train", "--resume", run, "--epochs", "2")
    assert [row["epoch"] for row in read_metrics(run)] == [1, 2]
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_errors(runs, tiny, tmp_path, capsys):
    assert "no checkpoints/last.pt" in cli_error(capsys, "train", "--resume", tmp_path)
    assert "not both" in cli_error(capsys, "train", "tiny-vae", "--resume", runs["b1"])
    assert "only --epochs, --device" in cli_error(capsys, "train", "--resume", runs["b1"], "--set", "lr=0.1")
    assert "only --epochs, --device" in cli_error(capsys, "train", "--resume", runs["b1"], "--batch-size", "10")
    with pytest.raises(ZooError, match="no checkpoints/last.pt"):
        Trainer.resume(tmp_path)


# -- failures during training -----------------------------------------------------------------


def test_non_finite_loss_stops_naming_epoch_and_step(tiny, tmp_path, capsys):
    run = tmp_path / "nan"
    message = cli_error(capsys, "train", "tiny-nan-vae", "--device", "cpu", "--no-progress", "--out", run)
    assert "non-finite" in message and "epoch 2, step 2" in message
    assert str(run / "checkpoints" / "last.pt") in message
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert [row["epoch"] for row in read_metrics(run)] == [1]
    model = zoo.load(run)  # the last good checkpoint still loads
    assert torch.isfinite(model.reconstruct(torch.rand(2, 1, 28, 28))).all()


def test_non_finite_loss_in_the_first_epoch(tiny, tmp_path):
    trainer = Trainer(
        "tiny-nan-vae", overrides={"encoder.nan_after": 1}, out=tmp_path / "run", device="cpu", progress=False
    )
    with pytest.raises(ZooError, match="epoch 1, step 2; no checkpoint was written yet"):
        trainer.fit()
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_gradient_clipping(tiny, tmp_path):
    """SGD (momentum 0.9) with a tiny clip norm: 2 steps move the parameters at most lr * clip * (1.9 + 1)."""
    clip, lr = 1e-4, 0.01
    trainer = Trainer(
        "tiny-mini-vae",
        overrides={"optimizer": "sgd", "grad_clip": str(clip), "lr": lr},
        out=tmp_path / "run",
        device="cpu",
        progress=False,
    )
    trainer.fit()
    seed_everything(0)
    initial = zoo.from_recipe(trainer.recipe).state_dict()
    moved = math.sqrt(sum(float((trainer.model.state_dict()[k] - v).pow(2).sum()) for k, v in initial.items()))
    assert 0 < moved <= lr * clip * 2.9 * 1.001
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["recipe"]["training"]["grad_clip"] == clip and config["recipe"]["training"]["optimizer"] == "sgd"
    assert config["overrides"] == {"optimizer": "sgd", "grad_clip": str(clip), "lr": lr}


def test_batch_larger_than_the_training_set(tiny, tmp_path):
    with pytest.raises(ZooError, match="batch size 500 is larger than the training set \\(100 images\\)"):
        Trainer(
            "tiny-mini-vae", overrides={"batch_size": 500}, out=tmp_path / "run", device="cpu", progress=False
        ).fit()


# -- the run directory is never clobbered -----------------------------------------------------


def test_existing_run_is_refused(runs, tiny, capsys):
    before = (runs["b1"] / "metrics.jsonl").read_text()
    message = cli_error(capsys, "train", "tiny-vae", "--device", "cpu", "--out", runs["b1"])
    assert "already holds a run" in message and "--resume" in message and "--overwrite" in message
    assert (runs["b1"] / "metrics.jsonl").read_text() == before


def test_overwrite_replaces_the_run(runs, tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["a"], run)
    Trainer("tiny-mini-vae", out=run, overwrite=True, device="cpu", progress=False).fit()
    assert [row["epoch"] for row in read_metrics(run)] == [1]
    assert json.loads((run / "config.json").read_text())["model"] == "tiny-mini-vae"
    assert not (run / "samples" / "epoch-002.png").exists()


def test_out_that_is_a_file(tiny, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert "is a file" in cli_error(capsys, "train", "tiny-vae", "--device", "cpu", "--out", tmp_path / "file")


# -- devices and precision --------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors on a machine without CUDA")
def test_cuda_without_cuda():
    for spec in ("cuda", "cuda:0", "cuda:7"):
        with pytest.raises(ZooError, match="no CUDA device is available"):
            resolve_device(spec)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_out_of_range():
    with pytest.raises(ZooError, match="CUDA device\\(s\\)"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_unknown_devices():
    for spec in ("tpu", "gpu", "cuda:x", ""):
        with pytest.raises(ZooError, match="device"):
            resolve_device(spec)


def test_auto_device():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks the error on a machine without MPS")
def test_mps_without_mps():
    with pytest.raises(ZooError, match="MPS"):
        resolve_device("mps")


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ZooError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ZooError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", cpu)


def test_bad_device_and_precision_through_the_cli(tiny, tmp_path, capsys):
    assert "unknown device 'tpu'" in cli_error(capsys, "train", "tiny-vae", "--device", "tpu", "--out", tmp_path / "r")
    assert "fp16 needs a CUDA device" in cli_error(
        capsys, "train", "tiny-vae", "--device", "cpu", "--precision", "fp16", "--out", tmp_path / "r"
    )
    assert not (tmp_path / "r").exists()  # nothing is created before the settings are checked


def test_bf16_on_cpu_trains(tiny, tmp_path):
    fp32 = Trainer("tiny-micro-vae", out=tmp_path / "fp32", device="cpu", precision="fp32", progress=False).fit()
    trainer = Trainer("tiny-micro-vae", out=tmp_path / "bf16", device="cpu", precision="bf16", progress=False)
    bf16 = trainer.fit()
    assert trainer.precision == "bf16"
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["resolved"]["precision"] == "bf16"
    for key in ("train_loss", "test_loss", "test_recon", "test_kl"):
        assert math.isfinite(bf16[0][key])
    assert bf16[0]["test_loss"] == pytest.approx(fp32[0]["test_loss"], rel=0.02)
    # 20 test images: the reconstruction grid shows 16 of them (2 rows of 8) above their reconstructions.
    assert png_size(tmp_path / "fp32" / "reconstructions" / "epoch-001.png") == (GRID_SIDE, 4 * 28 + 5 * 2)


@pytest.mark.slow
def test_compile_trains_like_eager(tiny, tmp_path):
    """--compile compiles the loss (forward and backward) and the optimizer step: same numbers."""
    eager = Trainer("tiny-micro-vae", out=tmp_path / "eager", device="cpu", progress=False).fit()
    trainer = Trainer("tiny-micro-vae", out=tmp_path / "compiled", device="cpu", compile=True, progress=False)
    compiled = trainer.fit()
    assert trainer._loss_fn != trainer._loss  # the compiled path really ran (bound methods compare equal)
    assert json.loads((tmp_path / "compiled" / "config.json").read_text())["settings"]["compile"] is True
    for key in ("train_loss", "test_loss"):
        assert compiled[0][key] == pytest.approx(eager[0][key], rel=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_on_cuda_is_finite_and_close_to_fp32(tiny, tmp_path):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16 support")
    assert resolve_precision("auto", torch.device("cuda")) == "auto"  # decided by timing both on the model
    results = {}
    for precision in ("fp32", "bf16"):
        trainer = Trainer("tiny-vae", out=tmp_path / precision, device="cuda", precision=precision, progress=False)
        results[precision] = trainer.fit()[-1]
        assert trainer.device.type == "cuda" and trainer.precision == precision
        assert trainer.train_data.images.device.type == "cuda"
    for key in ("train_loss", "test_loss", "test_recon", "test_kl"):
        assert math.isfinite(results["bf16"][key]), key
    assert results["bf16"]["test_loss"] == pytest.approx(results["fp32"]["test_loss"], rel=0.02)
    assert results["bf16"]["train_loss"] == pytest.approx(results["fp32"]["train_loss"], rel=0.02)


# -- overrides and CLI errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--set", "nonsense=1"], "unknown setting 'nonsense'"),
        (["--set", "latent_size=abc"], "latent_size expects int, got 'abc'"),
        (["--set", "lr=fast"], "lr expects float, got 'fast'"),
        (["--set", "epochs=-1"], "epochs must be at least 1 (got -1)"),
        (["--set", "batch_size=0"], "batch_size must be at least 1 (got 0)"),
        (["--set", "grad_clip=-1"], "grad_clip must be >= 0"),
        (["--set", "optimizer=lbfgs"], "optimizer must be adam, adamw, adagrad or sgd"),
        (["--set", "novalue"], "--set expects key=value"),
        (["--epochs", "-1"], "epochs must be at least 1 (got -1)"),
        (["--epochs", "0"], "epochs must be at least 1 (got 0)"),
        (["--batch-size", "0"], "batch_size must be at least 1 (got 0)"),
        (["--lr", "0"], "lr must be positive"),
    ],
)
def test_bad_overrides_are_one_line_errors(args, expected, tiny, tmp_path, capsys):
    message = cli_error(capsys, "train", "tiny-vae", "--device", "cpu", "--out", tmp_path / "run", *args)
    assert expected in message
    assert not (tmp_path / "run").exists()


def test_every_override_problem_is_reported_at_once(tiny, tmp_path, capsys):
    """The example of docs/training.md, message and all."""
    message = cli_error(
        capsys, "train", "vae-conv-mnist", "--set", "latent_size=abc", "--set", "epochs=0", "--set", "colour=red"
    )
    documented = next(
        line
        for line in (Path(__file__).parents[1] / "docs" / "training.md").read_text().splitlines()
        if line.startswith("Error: latent_size expects int")
    )
    assert message == documented


def test_component_option_override(tiny, tmp_path):
    trainer = Trainer(
        "tiny-mini-vae",
        overrides={"encoder.channels": "2", "latent_size": "3", "beta": "2.0"},
        out=tmp_path / "run",
        device="cpu",
        progress=False,
    )
    trainer.fit()
    assert trainer.model.latent_size == 3 and trainer.model.encoder.net[0].out_channels == 2
    assert trainer.objective.beta == 2.0
    assert zoo.load(tmp_path / "run").encoder.net[0].out_channels == 2


def test_unknown_model_is_a_one_line_error(tiny, capsys):
    message = cli_error(capsys, "train", "tiny-vea")
    assert "unknown model 'tiny-vea'" in message and "tiny-vae" in message
    assert "which model?" in cli_error(capsys, "train")


def test_uneven_batch_across_processes(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ZooError, match="batch size 51 does not split evenly across 2 processes"):
        Trainer("tiny-vae", overrides={"batch_size": 51}, out=tmp_path / "run", device="cpu")


# -- distributed training ---------------------------------------------------------------------


def test_process_shards_make_up_the_global_batch():
    images = torch.arange(120, dtype=torch.uint8).reshape(120, 1, 1, 1)
    single = list(DeviceData(images, torch.device("cpu"), False, Dist()).train_batches(40, seed=3, epoch=2))
    shards = [
        list(DeviceData(images, torch.device("cpu"), False, Dist(rank, 2, rank)).train_batches(40, 3, 2))
        for rank in range(2)
    ]
    assert len(single) == len(shards[0]) == len(shards[1]) == 3
    for whole, part0, part1 in zip(single, *shards):
        assert part0.shape[0] == part1.shape[0] == 20
        assert sorted(torch.cat([part0, part1]).flatten().tolist()) == sorted(whole.flatten().tolist())
    assert all(torch.cat(single).flatten().sort().values == torch.arange(120) / 255)
    evaluated = [
        torch.cat(list(DeviceData(images, torch.device("cpu"), False, Dist(r, 2, r)).eval_batches(7))) for r in range(2)
    ]
    assert torch.equal(torch.cat(evaluated), images.float() / 255)


@pytest.mark.slow
def test_ddp_two_cpu_processes(runs, tiny_site, tmp_path):
    """torchrun, 2 processes, gloo: only rank 0 writes, and the result matches a single process."""
    env = dict(os.environ, ZOO_PLUGINS=f"aevb,{PLUGIN_NAME}", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tiny_site), env.get("PYTHONPATH")]))
    env.pop("ZOO_DEBUG", None)
    work = tmp_path / "cwd"
    work.mkdir()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "zoo",
        "train",
        "tiny-vae",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        "ddp",
    ]
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = work / "ddp"
    assert sorted(p.name for p in work.iterdir()) == ["ddp"]  # no stray run directory from rank 1
    assert files_in(run) == files_in(runs["b1"])
    assert proc.stderr.count("epoch 1/1:") == 1 and proc.stdout.count("done:") == 1
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["world_size"] == 2
    assert len(load_checkpoint(run / "checkpoints" / "last.pt")["rng"]) == 2
    [row] = read_metrics(run)
    assert set(row) >= METRIC_KEYS
    single = read_metrics(runs["a"])[0]  # one process, same recipe, seed and global batch
    assert row["test_loss"] == pytest.approx(single["test_loss"], rel=0.01)
    assert row["train_loss"] == pytest.approx(single["train_loss"], rel=0.01)
    assert row["images_per_second"] == pytest.approx(200 / row["epoch_seconds"], rel=1e-6)


# -- the real thing ---------------------------------------------------------------------------


@pytest.mark.slow
def test_vae_conv_mnist_one_epoch_beats_the_seed(data_root, tmp_path, capsys):
    """`zoo train vae-conv-mnist --epochs 1`: at most the seed's 124.0 nats after one epoch."""
    run = tmp_path / "run"
    cli(
        "train",
        "vae-conv-mnist",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--data-dir",
        data_root,
        "--out",
        run,
        "--no-progress",
    )
    [row] = read_metrics(run)
    assert row["test_loss"] <= 124.0, row
    assert "done: test negative ELBO" in capsys.readouterr().out
    model = zoo.load(run)
    assert model.spec["recipe"]["id"] == "vae-conv-mnist"


# -- CPU threads ---------------------------------------------------------------------------------


@pytest.fixture
def two_threads(monkeypatch):
    """torch at 2 threads on a machine with 2 usable cores, OMP_NUM_THREADS unset; restored after."""
    import zoo.threads

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(zoo.threads, "usable_cores", lambda: 2)
    torch.set_num_threads(2)
    yield zoo.threads
    torch.set_num_threads(before)


def test_choose_threads_leaves_out_the_cores_others_keep_busy(two_threads, monkeypatch):
    threads = two_threads
    for busy, expected in ((0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (1.9, 1), (5.0, 1)):
        monkeypatch.setattr(threads, "busy_cores", lambda window=0.25, busy=busy: busy)
        assert threads.choose_threads()[0] == expected, busy
    assert threads.choose_threads(3) == (3, "--threads")
    monkeypatch.setattr(threads, "busy_cores", lambda window=0.25: None)  # no /proc/stat
    assert threads.choose_threads() == (2, "torch's default")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(threads, "busy_cores", lambda window=0.25: 1.0)
    assert threads.choose_threads() == (2, "OMP_NUM_THREADS")  # the user's own setting is not second-guessed


def test_busy_cores_reads_proc_stat(two_threads, monkeypatch):
    busy_cores = two_threads.busy_cores
    ticks = iter([(1000, 600), (1400, 800)])  # 400 ticks of which 200 idle: half of every CPU busy
    monkeypatch.setattr(two_threads, "_cpu_ticks", lambda: next(ticks))
    monkeypatch.setattr(two_threads.os, "cpu_count", lambda: 2)
    assert busy_cores(window=0) == pytest.approx(1.0)
    monkeypatch.setattr(two_threads, "_cpu_ticks", lambda: None)
    assert busy_cores(window=0) is None


def test_cpu_ticks_count_niced_time_as_free(tmp_path, monkeypatch):
    """Niced processes give way to a normal-priority run: their time counts as free, like idle."""
    import zoo.threads

    monkeypatch.undo()  # the real reader (conftest's autouse fixture replaces it, with this monkeypatch)
    stat = tmp_path / "stat"
    #                user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 300 50 500 20 5 5 20 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    assert zoo.threads._cpu_ticks(str(stat)) == (1000, 300 + 500 + 20)
    stat.write_text("intr 1 2 3\n")
    assert zoo.threads._cpu_ticks(str(stat)) is None
    assert zoo.threads._cpu_ticks(str(tmp_path / "missing")) is None


def test_threads_are_chosen_once_recorded_kept_on_resume_and_restored(tiny, tmp_path, two_threads, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(two_threads, "busy_cores", lambda window=0.25: 1.0)  # another process holds a core
    trainer = Trainer("tiny-vae", overrides={"epochs": 1}, out=tmp_path / "run", device="cpu", progress=False)
    monkeypatch.setattr(
        trainer, "evaluate", lambda real=trainer.evaluate: seen.append(torch.get_num_threads()) or real()
    )
    trainer.fit()
    assert seen == [1] and trainer.threads == 1
    assert torch.get_num_threads() == 2, "the caller's thread count is restored"
    assert "CPU threads: 1 (1.0 of 2 cores busy with other work)" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["threads"] == 1

    monkeypatch.setattr(two_threads, "busy_cores", lambda window=0.25: 0.0)  # idle now: the run keeps its 1
    resumed = Trainer.resume(tmp_path / "run", epochs=2, progress=False)
    resumed.fit()
    assert resumed.threads == 1
    again = Trainer.resume(tmp_path / "run", epochs=3, progress=False, threads=2)  # unless told otherwise
    again.fit()
    assert again.threads == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["settings"]["threads"] == 2


def test_bad_thread_counts(tiny, tmp_path, capsys):
    assert "--threads must be a whole number of CPU threads, at least 1 (got 0)" in cli_error(
        capsys, "train", "tiny-vae", "--threads", "0", "--out", tmp_path / "r"
    )
    with pytest.raises(ZooError, match="--threads must be a whole number"):
        Trainer("tiny-vae", out=tmp_path / "r2", device="cpu", threads=-2)
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


# -- CUDA graphs and the measured precision ------------------------------------------------------


def test_cuda_graphs_are_off_where_they_cannot_apply(tiny, tmp_path):
    trainer = Trainer("tiny-vae", overrides={"epochs": 1}, out=tmp_path / "run", device="cpu", progress=False)
    trainer.fit()
    assert trainer._graph_problem() == "not a CUDA device" and trainer.graphed is None
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["cuda_graph"] is False and config["settings"]["cuda_graph"] is True
    other = Trainer("tiny-vae", out=tmp_path / "other", device="cpu", cuda_graph=False)
    other.close()
    other.device = torch.device("cuda")  # only the reasons are read here: nothing runs on it
    other.step_module = zoo.objectives.TrainingStep(other.model, other.objective)
    assert other._graph_problem() == "--no-cuda-graph"
    other.settings.cuda_graph = True
    assert other._graph_problem() is None
    graphed = GraphedStep(other._step, other._loss, None, other.step_module, {}, other.device, compiled=False)
    assert [graphed.syncs_refused_in_pass(i) for i in (0, 1)] == [True, True]
    other.settings.compile = graphed.compiled = True
    assert other._graph_problem() is None  # the compiled step is captured like the eager one
    # The first warm-up pass may be the one that compiles (on a resume): only the second is checked.
    assert [graphed.syncs_refused_in_pass(i) for i in (0, 1)] == [False, True]
    other.precision = "fp16"
    assert other._graph_problem().startswith("--precision fp16")
    other.dist = Dist(0, 2, 0)
    assert other._graph_problem().startswith("torchrun")
    other.dist, other.precision, other.settings.compile = Dist(), "fp32", False
    other.model.encoder.cuda_graph_safe = False  # a component with per-step state in Python
    assert other._graph_problem() == "ConvEncoder set cuda_graph_safe = False (per-step state kept in Python)"


def test_resume_keeps_the_measured_precision(tiny, tmp_path):
    """A run whose ``auto`` precision was measured on CUDA resumes with the measured choice there;
    moved to the CPU, ``auto`` is decided again (fp32)."""
    import zoo.checkpoint

    Trainer("tiny-vae", overrides={"epochs": 1}, out=tmp_path / "run", device="cpu", progress=False).fit()
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    payload = load_checkpoint(last)
    payload["config"]["resolved"].update(device="cuda:0", precision="bf16")
    zoo.checkpoint.save_checkpoint(last, payload)
    resumed = Trainer.resume(tmp_path / "run", epochs=2, device="cpu", progress=False)
    assert resumed.precision == "fp32"
    resumed.close()
    payload["config"]["resolved"].update(device="cpu", precision="bf16")
    zoo.checkpoint.save_checkpoint(last, payload)
    resumed = Trainer.resume(tmp_path / "run", epochs=2, progress=False)
    assert resumed.precision == "bf16"
    resumed.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_trains_like_eager_and_resumes(tiny, tmp_path, monkeypatch):
    # Bit-exact resumption on a GPU needs deterministic kernels (deterministic=True): some of
    # cuDNN's convolution backward algorithms add with atomics, in an order that changes from run to run.
    runs = {}
    for name, graph in (("graph", True), ("eager", False)):
        trainer = Trainer(
            "tiny-vae",
            overrides={"epochs": 2},
            out=tmp_path / name,
            device="cuda",
            precision="fp32",
            cuda_graph=graph,
            progress=False,
            deterministic=True,
        )
        runs[name] = trainer.fit()
        assert (trainer.graphed is not None and trainer.graphed.graph is not None) == graph
        assert json.loads((tmp_path / name / "config.json").read_text())["resolved"]["cuda_graph"] is graph
    for key in ("train_loss", "test_loss"):
        assert runs["graph"][-1][key] == pytest.approx(runs["eager"][-1][key], rel=0.02), key
    # A run stopped after epoch 1 and resumed captures at once (the optimizer state is loaded) and
    # ends bit-identical to the uninterrupted graph run.
    Trainer(
        "tiny-vae",
        overrides={"epochs": 1},
        out=tmp_path / "split",
        device="cuda",
        precision="fp32",
        progress=False,
        deterministic=True,
    ).fit()
    resumed = Trainer.resume(tmp_path / "split", epochs=2, progress=False)
    assert resumed.settings.deterministic  # kept from the run
    resumed.fit()
    assert resumed.graphed.graph is not None and not torch.are_deterministic_algorithms_enabled()
    whole, split = (load_checkpoint(tmp_path / name / "checkpoints" / "last.pt") for name in ("graph", "split"))
    for key in whole["model"]:
        assert torch.equal(whole["model"][key], split["model"][key]), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_resume_is_bit_exact_with_the_defaults(tiny, tmp_path):
    """The default (deterministic="auto": cuDNN's deterministic algorithms, a fixed cuBLAS
    workspace) makes a resumed graph run bit-identical to a straight one, weights and optimizer
    state, and leaves the caller's cuDNN settings as they were."""
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    common = dict(device="cuda", precision="fp32", progress=False)
    Trainer("tiny-vae", overrides={"epochs": 2}, out=tmp_path / "whole", **common).fit()
    Trainer("tiny-vae", overrides={"epochs": 1}, out=tmp_path / "split", **common).fit()
    resumed = Trainer.resume(tmp_path / "split", epochs=2, progress=False)
    assert resumed.settings.deterministic == "auto"
    resumed.fit()
    assert resumed.graphed.graph is not None
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == before
    whole, split = (load_checkpoint(tmp_path / name / "checkpoints" / "last.pt") for name in ("whole", "split"))
    for part in ("model", "optimizer"):
        flat_a, flat_b = torch.utils._pytree.tree_leaves(whole[part]), torch.utils._pytree.tree_leaves(split[part])
        assert len(flat_a) == len(flat_b)
        for a, b in zip(flat_a, flat_b):
            assert not isinstance(a, torch.Tensor) or torch.equal(a, b), part


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_step_is_replayed_from_a_cuda_graph(tiny, tmp_path):
    """--compile on CUDA: the compiled loss (forward and backward) is captured with the fused
    optimizer step in one graph, and trains to the eager graph run's losses."""
    runs = {}
    for name, compiled in (("compiled", True), ("eager", False)):
        trainer = Trainer(
            "tiny-vae",
            overrides={"epochs": 2},
            out=tmp_path / name,
            device="cuda",
            precision="fp32",
            compile=compiled,
            progress=False,
        )
        runs[name] = trainer.fit()
        assert trainer.graphed.graph is not None and (trainer._loss_fn != trainer._loss) == compiled
    for key in ("train_loss", "test_loss"):
        assert runs["compiled"][-1][key] == pytest.approx(runs["eager"][-1][key], rel=0.02), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_step_that_cannot_be_captured_trains_eagerly(tiny, tmp_path, monkeypatch, capsys):
    from zoo.objectives import ELBO

    def syncing_forward(self, model, x, real=ELBO.forward):
        out = real(self, model, x)
        float(out.loss)  # reads a value on the host: not allowed while capturing
        return out

    monkeypatch.setattr(ELBO, "forward", syncing_forward)
    trainer = Trainer(
        "tiny-vae", overrides={"epochs": 2}, out=tmp_path / "run", device="cuda", precision="fp32", progress=False
    )
    history = trainer.fit()
    assert "could not be captured in a CUDA graph" in capsys.readouterr().err
    assert (trainer.graphed is None or trainer.graphed.graph is None) and all(
        math.isfinite(r["train_loss"]) for r in history
    )


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()), reason="needs CUDA with bf16")
def test_auto_precision_is_measured_on_cuda_and_kept(tiny, tmp_path, capsys):
    trainer = Trainer("tiny-vae", overrides={"epochs": 1}, out=tmp_path / "run", device="cuda", progress=False)
    trainer.fit()
    assert trainer.precision in ("fp32", "bf16")
    assert set(trainer.precision_trial) == {"fp32_ms_per_step", "bf16_ms_per_step"}
    assert "precision auto:" in capsys.readouterr().err
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert resolved["precision"] == trainer.precision
    resumed = Trainer.resume(tmp_path / "run", epochs=2, progress=False)
    assert resumed.precision == trainer.precision  # not measured again
    resumed.close()


class _EagerGraph:
    """A stand-in for a captured CUDA graph on the CPU: replaying runs the captured step again, with
    the gradients reset first (a real graph's backward writes its gradients afresh at each replay)."""

    def __init__(self, step, trainer) -> None:
        self.step, self.trainer = step, trainer

    def replay(self) -> None:
        self.trainer.optimizer.zero_grad(set_to_none=True)
        self.step()


def _graph_path_on_cpu(trainer, monkeypatch, captures, fail=False):
    def capture(step, device):
        assert device == trainer.device
        captures.append(trainer.graphed.static_x.clone())
        if fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        return _EagerGraph(step, trainer)

    monkeypatch.setattr(zoo.cuda_graphs, "capture_graph", capture)
    monkeypatch.setattr(trainer, "_graph_problem", lambda: None)


@pytest.mark.parametrize("fail", [False, True], ids=["captured", "capture-fails"])
def test_the_graph_path_trains_exactly_like_the_eager_path(tiny, tmp_path, monkeypatch, capsys, fail):
    """The CUDA-graph bookkeeping, run on the CPU with replays done eagerly: the first step is eager
    (it creates the optimizer state), the step is captured once per learning rate (the Burda schedule
    changes it after epoch 1), warm-up passes leave no trace, and the sums are right; so the run
    ends bit-identical to a plain one. A capture that fails falls back to eager steps, same result."""
    overrides = {"epochs": 2, "lr_schedule": "burda"}
    plain = Trainer("tiny-vae", overrides=overrides, out=tmp_path / "plain", device="cpu", progress=False)
    plain_rows = plain.fit()
    graphed = Trainer("tiny-vae", overrides=overrides, out=tmp_path / "graph", device="cpu", progress=False)
    captures = []
    _graph_path_on_cpu(graphed, monkeypatch, captures, fail=fail)
    rows = graphed.fit()
    assert len(captures) == (1 if fail else 2)
    if fail:
        assert "could not be captured in a CUDA graph (operation not permitted" in capsys.readouterr().err
        assert not graphed._graph_on and graphed.graphed.graph is None
    strip = [{k: v for k, v in r.items() if k not in ("epoch_seconds", "images_per_second")} for r in rows]
    assert strip == [
        {k: v for k, v in r.items() if k not in ("epoch_seconds", "images_per_second")} for r in plain_rows
    ]
    for mine, theirs in ((graphed.model, plain.model), (graphed.objective, plain.objective)):
        for (name, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), name  # the weights, and the warm-up's step count (a buffer)


def test_a_step_refused_in_the_warm_up_is_never_captured_and_leaves_no_trace(tiny, tmp_path, monkeypatch, capsys):
    """On CUDA the warm-up passes run with host syncs made errors, so a step that reads a value on
    the host is refused before any capture begins. Refused after its passes ran (the objective's
    step count moved, random numbers were drawn), the run still ends bit-identical to a plain one."""
    import zoo.cuda_graphs

    plain = Trainer("tiny-vae", overrides={"epochs": 1}, out=tmp_path / "plain", device="cpu", progress=False)
    plain_rows = plain.fit()
    graphed = Trainer("tiny-vae", overrides={"epochs": 1}, out=tmp_path / "graph", device="cpu", progress=False)
    captures, guarded = [], []
    _graph_path_on_cpu(graphed, monkeypatch, captures)

    @contextlib.contextmanager
    def refusing(on):
        guarded.append(on)
        yield
        raise RuntimeError("called a synchronizing CUDA operation")

    monkeypatch.setattr(zoo.cuda_graphs, "host_syncs_refused", refusing)
    rows = graphed.fit()
    assert guarded == [False] and captures == []  # (False: the stand-in device is the CPU)
    assert "could not be captured in a CUDA graph (called a synchronizing CUDA operation)" in capsys.readouterr().err
    assert [r["test_loss"] for r in rows] == [r["test_loss"] for r in plain_rows]
    for mine, theirs in ((graphed.model, plain.model), (graphed.objective, plain.objective)):
        for (name, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), name


def test_cuda_unusable_after_a_failed_capture_is_one_line(tiny, tmp_path, monkeypatch):
    """A capture that fails once begun can leave CUDA's generator unusable (torch 2.11 and older):
    the eager step after it then stops the run with a ZooError that says to use --no-cuda-graph."""
    trainer = Trainer("tiny-vae", overrides={"epochs": 1}, out=tmp_path / "run", device="cpu", progress=False)
    _graph_path_on_cpu(trainer, monkeypatch, [], fail=True)
    step = trainer._step

    def poisoned(x, captured=False):
        if not trainer._graph_on:
            raise RuntimeError("Offset increment outside graph capture encountered unexpectedly.")
        return step(x, captured=captured)

    monkeypatch.setattr(trainer, "_step", poisoned)
    with pytest.raises(
        ZooError,
        match=r"could not be captured in a CUDA graph \(operation not permitted.*"
        r"Offset increment.*--no-cuda-graph",
    ):
        trainer.fit()
    assert not trainer.rundir.locked  # released: the resume it suggests can take the run


# -- the host allocator ------------------------------------------------------------------------

_FAULTS = """
import resource, torch
import zoo.allocator
print(zoo.allocator.keep_freed_memory())
torch.set_num_threads(1)
conv = torch.nn.Conv2d(16, 16, 3, padding=1)
x = torch.randn(100, 16, 14, 14, requires_grad=True)  # 1.25 MB activations, as in vae-conv-mnist
def step():
    conv(x).relu().sum().backward()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
    reason="glibc's mallopt only",
)
def test_keep_freed_memory_ends_the_page_faults_of_each_step(monkeypatch):
    """Megabyte activations are reused from the heap instead of mapped fresh every step."""
    for name in [n for n in os.environ if n.startswith("MALLOC_") or n == "GLIBC_TUNABLES"]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("ZOO_KEEP_FREED_MEMORY", raising=False)
    kept = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True)
    applied, faults = kept.stdout.split()
    # glibc's defaults: 20,000-50,000 fresh pages over these 50 steps (each activation is 306 pages);
    # kept: none, or the heap growing once or twice for a new pattern of blocks.
    assert applied == "True" and int(faults) < 1600, kept.stdout


def test_keep_freed_memory_leaves_a_users_allocator_settings_alone(monkeypatch):
    import zoo.allocator

    calls = []
    monkeypatch.setattr(zoo.allocator.ctypes, "CDLL", lambda name: calls.append(name))
    for env, why in (
        (("ZOO_KEEP_FREED_MEMORY", "0"), "ZOO_KEEP_FREED_MEMORY=0"),
        (("ZOO_KEEP_FREED_MEMORY", " Off"), "ZOO_KEEP_FREED_MEMORY=0"),
        (("MALLOC_ARENA_MAX", "2"), "MALLOC_ARENA_MAX is set"),
        (("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"), "GLIBC_TUNABLES is set"),
        (("LD_PRELOAD", "/usr/lib/libjemalloc.so.2"), "another allocator is preloaded"),
    ):
        with monkeypatch.context() as m:
            for name in [n for n in os.environ if n.startswith("MALLOC_") or n in ("GLIBC_TUNABLES", "LD_PRELOAD")]:
                m.delenv(name)
            m.setenv(*env)
            m.setattr(zoo.allocator, "_applied", None)
            assert zoo.allocator._user_chose() == why
            assert zoo.allocator.keep_freed_memory() is False
    assert calls == []
