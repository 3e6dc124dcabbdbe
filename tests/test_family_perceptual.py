"""The perceptual plugin: MSSSIM-VAE. Its reconstruction term is 1 - MS-SSIM from torchmetrics (0 for
identical images, growing with noise), its gradient equals torchmetrics' own, images too small for
the chosen scales and bad options are one-line errors, and the recipe trains from the command line
on MNIST and on a folder of colour images."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_reliability import cli
from torch import nn
from torch.overrides import TorchFunctionMode
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim

import zoo
from zoo.conformance import parametrize_plugin_checks
from zoo_perceptual.objectives import MSSSIMVAE, WANG_BETAS, smallest_side, window_sigma

# The kit's images are 8x8 and 9x14: two scales and 3-pixel windows fit them.
SMALL = {
    "objective:msssim-vae": {"scales": 2, "kernel_size": 3},
    "encoder:conv-mnist": {"channels": 4},
    "decoder:conv-mnist": {"channels": 4},
}


@parametrize_plugin_checks("perceptual", options=SMALL)
def test_zoo_conformance(check):
    check()


def _digits(n=8, channels=1, side=28, seed=0):
    """Smooth images in [0, 1]: blurred random blobs, so structure exists at every scale."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, side // 4, side // 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_term_is_zero_for_identical_images_and_grows_with_noise(channels):
    objective = MSSSIMVAE()
    x = _digits(channels=channels)
    assert torch.allclose(objective.dissimilarity(x, x), torch.zeros(len(x)), atol=1e-6)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    terms = [objective.dissimilarity(x, (x + level * noise).clamp(0, 1)) for level in (0.02, 0.1, 0.3)]
    for smaller, larger in zip(terms, terms[1:]):
        assert (larger > smaller).all()
    assert ((terms[-1] > 0) & (terms[-1] <= 1)).all()


def test_the_term_and_its_gradient_are_torchmetrics():
    objective = MSSSIMVAE(scales=3, kernel_size=7)
    assert objective.betas == pytest.approx([b / sum(WANG_BETAS[:3]) for b in WANG_BETAS[:3]])
    x = _digits()
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    ours = objective.dissimilarity(x, y)
    ours.sum().backward()
    ours_grad = y.grad.clone()
    y.grad = None
    assert window_sigma(7) == pytest.approx(6 / 7) and int(3.5 * window_sigma(11) + 0.5) * 2 + 1 == 11
    theirs = 1 - ms_ssim(
        y, x, kernel_size=7, sigma=6 / 7, betas=objective.betas, data_range=1.0, reduction="none", normalize="simple"
    )
    theirs.sum().backward()
    assert torch.allclose(ours, theirs.detach(), atol=1e-6)
    assert torch.allclose(ours_grad, y.grad, atol=1e-6)


@pytest.mark.parametrize(
    ("channels", "options"),
    [(1, {}), (3, {"padding": 2}), (3, {"stride": 2, "bias": True}), (2, {"dilation": 2, "padding": 1})],
)
def test_depthwise_convs_over_the_batch_equal_the_plain_conv(channels, options):
    """MS-SSIM's depthwise windows run as one grouped conv over images x channels on the CPU: the
    same values and input gradients as the conv itself, for colour images and any conv settings;
    a conv that is not depthwise runs untouched."""
    from zoo_perceptual.objectives import DepthwiseOverBatch

    torch.manual_seed(0)
    weight = torch.randn(channels, 1, 5, 5)
    kwargs = {k: v for k, v in options.items() if k != "bias"}
    bias = torch.randn(channels) if options.get("bias") else None
    groups = []

    class Recorder(TorchFunctionMode):  # below DepthwiseOverBatch: sees the calls it makes
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.conv2d:
                groups.append((kwargs or {}).get("groups", args[6] if len(args) > 6 else 1))
            return func(*args, **(kwargs or {}))

    results = []
    for mode in (DepthwiseOverBatch, contextlib.nullcontext):
        x = torch.randn(4, channels, 12, 12, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        with Recorder(), mode():
            out = nn.functional.conv2d(x, weight, bias, groups=channels, **kwargs)
            dense = nn.functional.conv2d(x, torch.randn(2, channels, 3, 3, generator=torch.Generator().manual_seed(2)))
        (out.square().sum() + dense.sum()).backward()
        results.append((out.detach(), dense.detach(), x.grad))
    assert groups == [4 * channels, 1, channels, 1]  # the depthwise conv went over the batch, the other not
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_loss_is_beta_kl_plus_the_scaled_term():
    torch.manual_seed(0)
    model = zoo.create("msssim-vae-conv-mnist", **{"encoder.channels": 4, "decoder.channels": 4})
    x = _digits()
    outs = {}
    for scale, beta in ((1.0, 0.0), (10.0, 2.0)):
        torch.manual_seed(3)
        outs[scale] = MSSSIMVAE(beta=beta, scale=scale)(model, x)
    term, kl = outs[1.0].logs["msssim_loss"], outs[1.0].logs["kl"]
    assert outs[1.0].loss.item() == pytest.approx(term.item(), rel=1e-5)
    assert outs[10.0].loss.item() == pytest.approx(10 * term.item() + 2 * kl.item(), rel=1e-5)


@pytest.mark.parametrize(
    ("scales", "kernel_size", "side"), [(3, 7, 28), (2, 3, 4), (2, 5, 6), (5, 11, 176), (1, 11, 11), (4, 3, 27)]
)
def test_the_smallest_side_is_what_torchmetrics_takes(scales, kernel_size, side):
    assert smallest_side(scales, kernel_size) == side
    objective = MSSSIMVAE(scales=scales, kernel_size=kernel_size)
    x = torch.rand(2, 1, side, side)
    assert objective.dissimilarity(x, x).shape == (2,)
    with pytest.raises(zoo.ZooError, match=f"needs images of at least {side}x{side} pixels") as caught:
        objective.dissimilarity(x[..., :-1], x[..., :-1])
    assert "\n" not in str(caught.value) and "lower objective.scales or objective.kernel_size" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scales": 0}, "scales must be a whole number from 1 to 5"),
        ({"scales": 6}, "scales must be a whole number from 1 to 5"),
        ({"kernel_size": 4}, "kernel_size must be an odd whole number"),
        ({"beta": -1.0}, "beta must be a finite number at least 0"),
        ({"scale": 0.0}, "scale must be a finite number above 0"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(zoo.ZooError, match=message) as caught:
        zoo.build_objective("msssim-vae", options)
    assert "\n" not in str(caught.value)


def test_images_too_small_stop_training_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = _folder(tmp_path, side=16)
    code, out = cli(
        capsys, "train", "msssim-vae-conv-mnist", "--data", str(folder), "--max-steps", "1", "--device", "cpu",
        "--no-progress", "--out", str(tmp_path / "run"), "--set", "batch_size=10",
    )  # fmt: skip
    assert code != 0
    assert out.strip().splitlines()[-1].startswith("Error:") and "needs images of at least 28x28 pixels" in out


def _folder(root, side=32, count=40):
    folder = root / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def test_the_recipe_trains_and_evaluates_on_mnist(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    code, out = cli(
        capsys, "train", "msssim-vae-conv-mnist", "--data-dir", str(data_root), "--max-steps", "3", "--device",
        "cpu", "--no-progress", "--out", str(run), "--set", "encoder.channels=4", "--set", "decoder.channels=4",
    )  # fmt: skip
    assert code == 0, out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 0 < rows[-1]["train_msssim_loss"] <= 1 and np.isfinite(rows[-1]["test_loss"])
    code, out = cli(capsys, "eval", str(run), "--limit", "20", "--iw-samples", "3", "--no-fid", "--json")
    assert code == 0, out
    metrics, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    assert np.isfinite(metrics["test_neg_elbo"]) and np.isfinite(metrics["test_nll_iw"])


def test_the_recipe_trains_on_a_folder_of_colour_images(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = _folder(tmp_path)
    run = tmp_path / "run"
    code, out = cli(
        capsys, "train", "msssim-vae-conv-mnist", "--data", str(folder), "--max-steps", "2", "--device", "cpu",
        "--no-progress", "--out", str(run), "--set", "batch_size=10", "--set", "encoder.channels=4",
        "--set", "decoder.channels=4",
    )  # fmt: skip
    assert code == 0, out
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["dataset"] == "files:pictures"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 0 < rows[-1]["train_msssim_loss"] <= 1
    code, out = cli(capsys, "eval", str(run), "--limit", "8", "--iw-samples", "2", "--no-fid", "--json")
    assert code == 0, out
    metrics, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])
    assert np.isfinite(metrics["test_neg_elbo"]) and np.isfinite(metrics["test_nll_iw"])
