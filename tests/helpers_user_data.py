"""Small folders of image files and array files written in a test's tmp_path, for tests/test_user_data*.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}


def pixels(seed: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    """Random uint8 pixels, ``[H, W, C]`` (``[H, W]`` for one channel)."""
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write(path: Path, array: np.ndarray, mode: str | None = None) -> np.ndarray:
    """``array`` saved as an image file at ``path`` (format from the suffix, WebP lossless); returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array, mode)
    options = {"lossless": True} if path.suffix == ".webp" else {}
    image.save(path, FORMATS[path.suffix], **options)
    return array


def folder(root: Path, count: int, *, size=(40, 40), channels=3, suffix=".png", seed=0) -> dict[str, np.ndarray]:
    """``count`` images named ``img-NNN`` in ``root``; returns name -> pixels."""
    return {
        f"img-{i:03d}{suffix}": write(root / f"img-{i:03d}{suffix}", pixels(seed + i, *size, channels))
        for i in range(count)
    }


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``root`` with its size and modification time (links not followed)."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def chw(array: np.ndarray) -> np.ndarray:
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh zoo cache for the test, and no data set remembered from another test."""
    from zoo import user_data

    folder = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    monkeypatch.setattr(user_data, "_READ", {})
    return folder


def forget() -> None:
    """Forget the data sets read in this process (as a new process would)."""
    from zoo import user_data

    user_data._READ.clear()
