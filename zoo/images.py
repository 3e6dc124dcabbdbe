"""Image grids written atomically (torchvision's make_grid / save_image do the drawing)."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from zoo.checkpoint import atomic_write


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int = 8) -> Path:
    """Save ``images`` ([N, C, H, W], values in [0, 1]) as one PNG grid at ``path``."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = images.detach().float().clamp(0, 1).cpu()
    atomic_write(path, lambda f: save_image(images, f, nrow=nrow, padding=2, format="png"))
    return path
