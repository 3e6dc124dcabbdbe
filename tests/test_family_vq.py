"""The vq plugin: VQ-VAE (van den Oord et al. 2017) and its gated PixelCNN prior over the code indices."""

from __future__ import annotations

import pytest
from conftest import OWN_PLUGINS

from zoo import plugins
from zoo.conformance import parametrize_plugin_checks


@pytest.fixture(autouse=True)
def _vq_loaded(monkeypatch):
    """zoo's own plugins and this one (the pixelcnn's models use the reference plugin's parts)."""
    monkeypatch.setenv("ZOO_PLUGINS", OWN_PLUGINS + ",vq")
    plugins.reset()
    yield
    plugins.reset()


SMALL = {
    "encoder:vq-conv": {"codebook_size": 8, "channels": 8, "res_channels": 4, "res_blocks": 1},
    "decoder:vq-conv": {"channels": 8, "res_channels": 4, "res_blocks": 1},
    "recipe:vq-vae-mnist": {"encoder.channels": 8, "decoder.channels": 8, "encoder.res_channels": 4, "decoder.res_channels": 4},
    "recipe:vq-vae-cifar10": {"encoder.channels": 8, "decoder.channels": 8, "encoder.res_channels": 4, "decoder.res_channels": 4},
}


@parametrize_plugin_checks("vq", options=SMALL)
def test_vq_conforms(check):
    check()
