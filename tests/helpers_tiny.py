"""A throwaway, installed-looking plugin with a tiny data set, for tests that train for real.

:func:`write_tiny_plugin` writes two plugin modules and a ``tinyzoo-0.0.dist-info`` folder
announcing them in the ``zoo`` entry-point group. Put the folder on ``PYTHONPATH`` (subprocesses,
see :func:`tiny_env`) or ``sys.path`` (in-process, then ``zoo.plugins.reset()``) and name the
plugins in ``ZOO_PLUGINS``; zoo discovers them exactly as it discovers a pip-installed package.

What ``tiny`` registers:

``tiny`` (dataset)
    2000 train / 200 test deterministic 1x16x16 uint8 images (noisy copies of 8 random
    prototypes, so there is something to learn); an epoch takes about a second on one CPU core.
``tiny-float`` (dataset)
    The same images returned as float32 in [0, 255]: a loader breaking the uint8 contract.
``tiny-conv`` (encoder)
    The reference conv encoder plus ``nan_after``: after that many training forward passes it
    returns NaN (0: never), to provoke a numerical fault at a known step. With
    ``TINY_STEP_SECONDS`` set it sleeps that long at every training step, so a test can kill a
    run mid-epoch however busy the machine is; the results are unchanged.
``tiny-vae`` / ``tiny-vae-float`` (models)
    ``tiny-conv`` encoder, ``conv-mnist`` decoder (from the reference plugin), N(0, I) prior,
    Bernoulli likelihood, 4 latents, 8 channels; 3 epochs of batch 100 by default.

``broken`` is a second entry point whose ``register_recipes`` raises.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

TRAIN_SIZE, TEST_SIZE, SIDE = 2000, 200, 16
STEPS_PER_EPOCH = TRAIN_SIZE // 100  # at the default batch size

_TINY_PLUGIN = '''
"""Test plugin: a tiny data set, a NaN-injecting encoder and two recipes (see tests/helpers_tiny.py)."""
import zoo

TRAIN_SIZE, TEST_SIZE, SIDE = {train}, {test}, {side}


def load(root, split, download, as_float=False):
    import torch

    prototypes = torch.rand(8, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(42))
    g = torch.Generator().manual_seed(1 if split == "train" else 2)
    n = TRAIN_SIZE if split == "train" else TEST_SIZE
    labels = torch.randint(0, 8, (n,), generator=g)
    noise = torch.rand(n, 1, SIDE, SIDE, generator=g)
    images = ((0.8 * prototypes[labels] + 0.2 * noise) * 255).round()
    return (images if as_float else images.to(torch.uint8)), labels


def make_encoder(latent_size, data_shape, channels=8, nan_after=0):
    import os
    import time

    from zoo_aevb.components import ConvEncoder

    step_seconds = float(os.environ.get("TINY_STEP_SECONDS", "0"))

    class NanAfterEncoder(ConvEncoder):
        """ConvEncoder whose posterior mean turns NaN after `nan_after` training passes."""

        cuda_graph_safe = False  # its pass counter and its sleep live in Python

        def __init__(self):
            super().__init__(latent_size, data_shape, channels)
            self.nan_after = nan_after
            self.calls = 0

        def forward(self, x):
            q = super().forward(x)
            if self.training:
                time.sleep(step_seconds)  # a slow run, to SIGKILL it at leisure; the numbers are unchanged
                self.calls += 1
                if self.nan_after and self.calls > self.nan_after:
                    base = q.base_dist
                    return type(q)(type(base)(base.loc * float("nan"), base.scale, validate_args=False), 1,
                                   validate_args=False)
            return q

    return NanAfterEncoder()


@zoo.hookimpl
def register_datasets(register):
    from zoo.data import DatasetInfo

    sizes = {{"train": TRAIN_SIZE, "test": TEST_SIZE}}
    register(DatasetInfo("tiny", "tiny test images", (1, SIDE, SIDE), "tiny_plugin:load", {{}}, sizes))
    register(DatasetInfo("tiny-float", "tiny test images as floats in [0, 255] (breaks the uint8 contract)",
                         (1, SIDE, SIDE), "tiny_plugin:load", {{"as_float": True}}, sizes))


@zoo.hookimpl
def register_encoders(register):
    register("tiny-conv", "tiny_plugin:make_encoder", description="conv-mnist encoder that can turn NaN")


@zoo.hookimpl
def register_recipes(register):
    for rid, dataset in (("tiny-vae", "tiny"), ("tiny-vae-float", "tiny-float")):
        register(zoo.Recipe(
            id=rid, description="tiny test model", encoder="tiny-conv", decoder="conv-mnist",
            prior="standard-normal", likelihood="bernoulli", dataset=dataset, latent_size=4,
            encoder_options={{"channels": 8}}, decoder_options={{"channels": 8}},
            training=zoo.Training(epochs=3, batch_size=100, lr=3e-3)))
'''

_BROKEN_PLUGIN = """
import zoo


@zoo.hookimpl
def register_recipes(register):
    raise RuntimeError("broken on purpose while registering")
"""


def write_tiny_plugin(folder: str | os.PathLike) -> Path:
    """Write the plugin modules and their dist-info into ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plugin = _TINY_PLUGIN.format(train=TRAIN_SIZE, test=TEST_SIZE, side=SIDE)
    (folder / "tiny_plugin.py").write_text(textwrap.dedent(plugin))
    (folder / "broken_plugin.py").write_text(_BROKEN_PLUGIN)
    info = folder / "tinyzoo-0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyzoo\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[zoo]\ntiny = tiny_plugin\nbroken = broken_plugin\n")
    return folder


def tiny_env(folder: str | os.PathLike, plugins: str = "aevb,tiny", **extra: str) -> dict[str, str]:
    """An environment for a ``zoo`` subprocess that sees the tiny plugin.

    One intra-op thread per process: runs are then bit-for-bit reproducible whatever else the
    machine is doing, and two training processes fit on two cores.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])
    env.update(ZOO_PLUGINS=plugins, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("ZOO_DEBUG", None)
    env.update(extra)
    return env


def zoo_command(*args: str) -> list[str]:
    """``zoo ARGS`` through the console script installed beside this interpreter."""
    script = Path(sys.executable).with_name("zoo")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "zoo", *args]
