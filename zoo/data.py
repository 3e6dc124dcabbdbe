"""Data sets: registered by id, read with torchvision's readers, held in memory as uint8.

The built-in data sets are registered by this module acting as a plugin (it is listed in
:data:`zoo.plugins.DEFAULT_PLUGINS`), exactly as a third-party package registers its own.

Where files are looked for (first match wins): the ``data_dir`` argument (``--data-dir``), the
``ZOO_DATA`` environment variable, then a per-user cache (``$XDG_CACHE_HOME/zoo/data``, by
default ``~/.cache/zoo/data``). Files are found in torchvision's layout
(``<root>/MNIST/raw/train-images-idx3-ubyte.gz``); missing files are downloaded by
torchvision when there is a network. The data root is never written to except by that download:
compressed files are decompressed into the cache, so a read-only root works.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError
from zoo.hookspecs import hookimpl

if TYPE_CHECKING:
    from torch import Tensor

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """A data set of images the zoo can train on.

    ``loader`` is ``"module:function"`` (or the function) called as
    ``loader(root: Path, split: str, download: bool, **loader_options)`` and returning
    ``(images, labels)``: images uint8 ``[N, *shape]``, labels int64 ``[N]``.
    ``binarized``: each pixel is redrawn as Bernoulli(pixel / 255) every time it is used
    (dynamic binarization).
    """

    id: str
    description: str
    shape: tuple[int, ...]
    loader: Any
    loader_options: dict[str, Any] = field(default_factory=dict)
    split_sizes: dict[str, int] = field(default_factory=dict)
    binarized: bool = False
    num_classes: int = 10

    def load(self, split: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> tuple[Tensor, Tensor]:
        """Images (uint8 ``[N, *shape]``) and labels of ``split``, checked for shape and count."""
        if split not in SPLITS:
            raise ZooError(f"unknown split {split!r}; use 'train' or 'test'")
        loader = self.loader
        if isinstance(loader, str):
            import importlib

            module, _, attr = loader.partition(":")
            loader = getattr(importlib.import_module(module), attr)
        images, labels = loader(resolve_data_dir(data_dir), split, download, **self.loader_options)
        dtype = str(getattr(images, "dtype", type(images).__name__)).replace("torch.", "")
        if dtype != "uint8":
            # The trainer scales by 1/255 itself; floats would be scaled twice (or land outside [0, 1]).
            raise ZooError(
                f"{self.id} {split}: the loader returned {dtype} images, but data set loaders must return "
                "uint8 tensors (grey levels 0..255); convert them with (x * 255).round().to(torch.uint8)"
            )
        expected = self.split_sizes.get(split)
        if tuple(images.shape[1:]) != tuple(self.shape) or len(images) != len(labels):
            raise ZooError(
                f"{self.id} {split}: files hold images shaped {tuple(images.shape)} with {len(labels)} labels, "
                f"expected [N, {', '.join(map(str, self.shape))}]; replace the files"
            )
        if expected is not None and len(images) != expected:
            raise ZooError(
                f"{self.id} {split}: found {len(images)} images, expected {expected}; the files are "
                "incomplete or belong to another data set: replace them"
            )
        return images, labels


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zoo"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root: ``data_dir``, else ``$ZOO_DATA``, else the per-user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("ZOO_DATA"):
        return Path(os.environ["ZOO_DATA"]).expanduser()
    return cache_dir() / "data"


# -- MNIST-format (IDX) files ----------------------------------------------------------------

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / f"{stem}.gz", raw / stem):
        if candidate.is_file():
            return candidate
    return None


def _plain_copy(path: Path) -> Path:
    """An uncompressed copy of ``path`` in the cache (the data root may be read-only)."""
    if path.suffix != ".gz":
        return path
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "extracted" / key / path.stem
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    try:
        with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise ZooError(f"{path} is not a readable gzip file ({exc}); delete it and download it again") from None
    os.replace(tmp, target)
    return target


def _read_idx(path: Path, ndim: int) -> Tensor:
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    try:
        tensor = read_sn3_pascalvincent_tensor(str(_plain_copy(path)), strict=True)
    except ZooError:
        raise
    except Exception:  # torchvision asserts on a bad header or a short file
        raise ZooError(
            f"{path} is not a valid IDX file (bad header or truncated); delete it and download it again"
        ) from None
    if tensor.ndim != ndim:
        raise ZooError(f"{path} holds a {tensor.ndim}-d array, expected {ndim}-d; is it the right file?")
    return tensor


def load_idx(root: Path, split: str, download: bool, *, folder: str, torchvision_class: str) -> tuple[Tensor, Tensor]:
    """Read an MNIST-format data set from ``root/<folder>/raw``, downloading it if allowed and missing."""
    import torch

    raw = root / folder / "raw"
    stems = _IDX_FILES[split]
    paths = [_find(raw, stem) for stem in stems]
    if any(p is None for p in paths):
        if download:
            _download(root, folder, torchvision_class)
            paths = [_find(raw, stem) for stem in stems]
        if any(p is None for p in paths):
            missing = ", ".join(f"{stem}.gz" for stem, p in zip(stems, paths) if p is None)
            raise ZooError(
                f"{folder} files not found: put {missing} in {raw} (or pass --data-dir / set ZOO_DATA "
                "to a folder holding them, or connect to the network so torchvision can download them)"
            )
    images = _read_idx(paths[0], 3)
    labels = _read_idx(paths[1], 1)
    if len(images) != len(labels):
        raise ZooError(f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels; replace them")
    return images.unsqueeze(1).contiguous(), labels.to(torch.int64)


#: Seconds a download waits on a silent connection: torchvision's urlopen has no timeout of its
#: own, so behind a firewall that drops packets it would hang instead of reaching the clear error.
DOWNLOAD_TIMEOUT = 30.0


def _download(root: Path, folder: str, torchvision_class: str) -> None:
    import socket

    import torchvision.datasets as tvd

    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        getattr(tvd, torchvision_class)(str(root), train=True, download=True)
        getattr(tvd, torchvision_class)(str(root), train=False, download=True)
    except Exception:  # noqa: BLE001 - offline, read-only root, server down: the caller explains
        return
    finally:
        socket.setdefaulttimeout(saved)


BUILTIN_DATASETS = (
    DatasetInfo(
        "mnist",
        "MNIST handwritten digits, grey levels scaled to [0, 1]",
        (1, 28, 28),
        "zoo.data:load_idx",
        {"folder": "MNIST", "torchvision_class": "MNIST"},
        {"train": 60000, "test": 10000},
    ),
    DatasetInfo(
        "binarized-mnist",
        "MNIST, dynamically binarized: every pixel redrawn as Bernoulli(grey level) each time it is used",
        (1, 28, 28),
        "zoo.data:load_idx",
        {"folder": "MNIST", "torchvision_class": "MNIST"},
        {"train": 60000, "test": 10000},
        binarized=True,
    ),
    DatasetInfo(
        "fashion-mnist",
        "Fashion-MNIST clothing images, grey levels scaled to [0, 1]",
        (1, 28, 28),
        "zoo.data:load_idx",
        {"folder": "FashionMNIST", "torchvision_class": "FashionMNIST"},
        {"train": 60000, "test": 10000},
    ),
)


@hookimpl
def register_datasets(register):
    for info in BUILTIN_DATASETS:
        register(info)
