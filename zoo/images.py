"""Image grids written atomically (torchvision's make_grid / save_image do the drawing), and a
model's reconstructions, samples and latent interpolation as grids."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from zoo.checkpoint import atomic_write
from zoo.errors import ZooError


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int = 8) -> Path:
    """Save ``images`` ([N, C, H, W], values in [0, 1]) as one PNG grid at ``path``."""
    from torchvision.utils import save_image

    path = Path(path)
    images = images.detach().float().clamp(0, 1).cpu()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: save_image(images, f, nrow=nrow, padding=2, format="png"))
    except OSError as exc:
        raise ZooError(
            f"could not write image {path}: {exc.strerror or exc}; free some space or choose another "
            "path (any previous version of the file is intact)"
        ) from None
    return path


def reconstruction_rows(x: Tensor, recon: Tensor, cols: int = 8) -> Tensor:
    """Images ``x`` and their reconstructions interleaved by rows of ``cols``: a row of inputs, the
    row of their reconstructions below, and so on (``len(x)`` must be a multiple of ``cols``)."""
    shape = (len(x) // cols, cols, *x.shape[1:])
    return torch.stack([x.reshape(shape), recon.reshape(shape)], dim=1).reshape(-1, *x.shape[1:])


@torch.inference_mode()
def save_images(model, x: Tensor, out: Path, seed: int = 0) -> dict[str, str]:
    """Reconstructions, prior samples and a latent interpolation grid as PNGs in ``out``."""
    from zoo.estimators import inference_input

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    n = min(32, len(x))
    rows = max(1, n // 8)
    n = rows * 8 if len(x) >= 8 else n
    shown = inference_input(x[:n])
    recon = model.reconstruct(shown)
    if n % 8 == 0:
        grid = reconstruction_rows(shown, recon, 8)
    else:
        grid = torch.cat([shown, recon])
    paths["reconstructions"] = str(save_grid(grid, out / "reconstructions.png", nrow=8 if n >= 8 else n))
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        paths["samples"] = str(save_grid(model.sample(64), out / "samples.png", nrow=8))
    # Interpolate between the posterior means of pairs of test images, 10 steps per row.
    pairs = min(8, len(x) // 2)
    if pairs >= 1:
        means = model.encoder(inference_input(x[: 2 * pairs])).mean
        a, b = means[:pairs], means[pairs : 2 * pairs]
        steps = torch.linspace(0, 1, 10, device=x.device)
        z = a[:, None, :] + steps[None, :, None] * (b - a)[:, None, :]  # [pairs, 10, L]
        images = model.likelihood(model.decoder(z)).mean.reshape(-1, *x.shape[1:])
        paths["interpolation"] = str(save_grid(images, out / "interpolation.png", nrow=10))
    return paths


@torch.no_grad()
def save_epoch_grids(
    model, test_data, out: Path, epoch: int, *, seed: int, count: int
) -> dict[str, tuple[Tensor, int]]:
    """A training epoch's grids: ``count`` images decoded from fixed prior noise (``seed``, so
    successive epochs are comparable; the caller's generators are untouched) in
    ``out/samples/epoch-NNN.png``, and up to 32 test images above their reconstructions in
    ``out/reconstructions/epoch-NNN.png``. Returns them as (images, per row)."""
    device = model.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        samples = model.sample(count)
    save_grid(samples, out / "samples" / f"epoch-{epoch:03d}.png")
    x = next(test_data.eval_batches(32))[:32]
    cols = min(8, len(x))  # up to 4 rows of 8; fewer when this process's share of the test set is small
    x = x[: len(x) // cols * cols]
    rows = reconstruction_rows(x, model.reconstruct(x), cols)
    save_grid(rows, out / "reconstructions" / f"epoch-{epoch:03d}.png", nrow=cols)
    return {"samples": (samples, 8), "reconstructions": (rows, cols)}
