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
