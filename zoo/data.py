"""Data sets: registered by id; the built-in ones read by zoo's own IDX reader and held in memory as uint8.

The built-in data sets are registered by this module acting as a plugin (it is listed in
:data:`zoo.plugins.DEFAULT_PLUGINS`), exactly as a third-party package registers its own.

Where files are looked for (first match wins): the ``data_dir`` argument (``--data-dir``), the
``ZOO_DATA`` environment variable, then a per-user cache (``$XDG_CACHE_HOME/zoo/data``, by
default ``~/.cache/zoo/data``). Files are found in torchvision's layout
(``<root>/MNIST/raw/train-images-idx3-ubyte.gz``, or the same name without ``.gz``) and parsed
here: each IDX header is checked before its data is read (type, dimensions, a size limit), gzip
files are decompressed in memory, and the bytes become a uint8 tensor with ``torch.frombuffer``.
torchvision is used only to download missing files, when there is a network. The data root is
never written to except by that download: an uncompressed copy of each compressed file is kept in
the cache, so a read-only root works.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import struct
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
    #: For a data set built from a user's files rather than registered by id: the settings that
    #: rebuild it (path, image size, split), recorded in a run's config.json for resume and eval.
    source: dict[str, Any] | None = None
    #: The class names of labels 0..K-1 when they have names (a user's class folders); empty otherwise.
    classes: tuple[str, ...] = ()

    def load(
        self, split: str, data_dir: str | os.PathLike | None = None, download: bool = True
    ) -> tuple[Tensor, Tensor]:
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


#: The most data one IDX file may hold (the MNIST-format data sets hold under 50 MB). The header
#: says how much a file holds, so anything larger is refused before it is read or decompressed.
MAX_IDX_BYTES = 1 << 30

_IDX_TYPES = {0x08: 1}  # uint8, the type of every MNIST-format file


def _parse_header(head: bytes, path: Path) -> tuple[tuple[int, ...], int]:
    """The dimensions an IDX header announces and the header's length; a one-line error if it is not one."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or not 1 <= head[3] <= 4:
        raise ZooError(f"{path} is not a valid IDX file (bad header); delete it and download it again")
    if head[2] not in _IDX_TYPES:
        raise ZooError(
            f"{path} holds IDX data of type 0x{head[2]:02x}; MNIST-format data sets are uint8 (0x08): "
            "is it the right file?"
        )
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise ZooError(f"{path} is not a valid IDX file (truncated header); delete it and download it again")
    dims = struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])
    nbytes = math.prod(dims) * _IDX_TYPES[head[2]]
    if nbytes > MAX_IDX_BYTES:
        raise ZooError(
            f"{path} announces {nbytes / 1e9:.1f} GB of data, more than zoo reads from one file "
            f"({MAX_IDX_BYTES / 1e9:.1f} GB); is it the right file?"
        )
    return dims, 4 + 4 * ndim


def _read_exactly(read, nbytes: int, path: Path) -> bytearray:
    """``nbytes`` from ``read`` in chunks (so a file that lies about its size costs only what it holds),
    then nothing more."""
    data = bytearray()
    while len(data) < nbytes:
        chunk = read(min(1 << 24, nbytes - len(data)))
        if not chunk:
            raise ZooError(
                f"{path} is not a valid IDX file (truncated: {len(data)} of {nbytes} data bytes); "
                "delete it and download it again"
            )
        data += chunk
    if read(1):
        raise ZooError(
            f"{path} is not a valid IDX file (more data than its header announces); delete it and download it again"
        )
    return data


def _tensor(dims: tuple[int, ...], data: bytearray) -> Tensor:
    import torch

    if not data:
        return torch.zeros(dims, dtype=torch.uint8)
    return torch.frombuffer(data, dtype=torch.uint8).reshape(dims)


def _read_plain(path: Path, shown: Path) -> Tensor:
    """An uncompressed IDX file; its size is checked against its header before the data is read."""
    with open(path, "rb") as f:
        head = f.read(4)
        dims, length = _parse_header(head + f.read(4 * head[3]) if len(head) == 4 else head, shown)
        size = os.fstat(f.fileno()).st_size
        if size != length + math.prod(dims):
            problem = "truncated" if size < length + math.prod(dims) else "more data than its header announces"
            raise ZooError(f"{shown} is not a valid IDX file ({problem}); delete it and download it again")
        return _tensor(dims, _read_exactly(f.read, math.prod(dims), shown))


def _read_gzip(path: Path) -> tuple[tuple[int, ...], bytearray]:
    """A gzip-compressed IDX file, decompressed in memory no further than its header announces."""
    import zlib

    try:
        with gzip.open(path, "rb") as src:
            head = src.read(4)
            dims, _ = _parse_header(head + src.read(4 * head[3]) if len(head) == 4 else head, path)
            return dims, _read_exactly(src.read, math.prod(dims), path)
    except (OSError, EOFError, zlib.error) as exc:
        raise ZooError(f"{path} is not a readable gzip file ({exc}); delete it and download it again") from None


def _cache_entry(path: Path) -> Path:
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "extracted" / key / path.stem


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _store_in_cache(target: Path, dims: tuple[int, ...], data: bytearray) -> None:
    """Keep an uncompressed copy (best effort: an unwritable or full cache only costs speed).

    The copy is written to ``.NAME.PID.tmp`` and renamed into place; temporaries that an
    interrupted process left behind are removed first.
    """
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            pid = stale.name.split(".")[-2]
            if not pid.isdigit() or not _pid_alive(int(pid)):
                stale.unlink(missing_ok=True)
        header = struct.pack(f">BBBB{len(dims)}I", 0, 0, 0x08, len(dims), *dims)
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(data)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if not isinstance(exc, OSError):
            raise


def _load_idx_tensor(path: Path) -> Tensor:
    if path.suffix != ".gz":
        return _read_plain(path, path)
    try:
        cached = _cache_entry(path)
    except OSError:
        cached = None
    if cached is not None:
        try:
            if cached.is_file():
                return _read_plain(cached, cached)
        except (ZooError, OSError):
            # A damaged cache entry (not the user's file): drop it and decompress the original again.
            with contextlib.suppress(OSError):
                cached.unlink()
    dims, data = _read_gzip(path)
    if cached is not None:
        _store_in_cache(cached, dims, data)
    return _tensor(dims, data)


def _read_idx(path: Path, ndim: int) -> Tensor:
    try:
        tensor = _load_idx_tensor(path)
    except MemoryError:
        raise ZooError(f"not enough memory to read {path}; close other programs or use a larger machine") from None
    except OSError as exc:
        raise ZooError(f"cannot read {path}: {exc.strerror or exc}") from None
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
