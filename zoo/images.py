"""Image grids written atomically (torchvision's make_grid / save_image do the drawing)."""

from __future__ import annotations

import os
from pathlib import Path

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
        raise ZooError(f"could not write image {path}: {exc.strerror or exc}; free some space or choose another "
                       "path (any previous version of the file is intact)") from None
    return path


def reconstruction_rows(x: Tensor, recon: Tensor, cols: int = 8) -> Tensor:
    """Images ``x`` and their reconstructions interleaved by rows of ``cols``: a row of inputs, the
    row of their reconstructions below, and so on (``len(x)`` must be a multiple of ``cols``)."""
    import torch

    shape = (len(x) // cols, cols, *x.shape[1:])
    return torch.stack([x.reshape(shape), recon.reshape(shape)], dim=1).reshape(-1, *x.shape[1:])
