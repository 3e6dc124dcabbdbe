"""Decoded images kept on disk: a data set is decoded once into a uint8 ``.npy`` file in zoo's cache
and read back memory-mapped, so a set larger than host memory can be trained and later runs skip
the decoding.

An entry is named by a hash of everything its content depends on (the source files' names, sizes
and modification times, and the decoding options), written to a temporary file and renamed into
place, so an interrupted decode leaves nothing that a later run would take for complete. The
source folder is never written to.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


def entry_dir() -> Path:
    """The folder holding the decoded data sets (``$XDG_CACHE_HOME/zoo/decoded``)."""
    from zoo.data import cache_dir

    return cache_dir() / "decoded"


def entry_key(key: dict[str, Any]) -> str:
    """A short, stable name for an entry: the hash of ``key`` written as sorted JSON."""
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


#: The files behind the memory-mapped arrays handed out, by the address of their data.
_MAPPED: dict[int, tuple[str, int, tuple[int, ...]]] = {}


def mapped_file(tensor) -> tuple[str, int] | None:
    """``(path, byte offset)`` of the cached file a tensor of :func:`decoded` maps, whole and
    unchanged in shape; None for any other tensor (held in memory, sliced, or another array)."""
    try:
        found = _MAPPED.get(tensor.data_ptr())
    except (AttributeError, RuntimeError):
        return None
    if found is None or tuple(tensor.shape) != found[2] or not tensor.is_contiguous():
        return None
    return found[0], found[1]


def _open(path: Path, shape: tuple[int, ...] | None):
    import numpy as np

    # Copy-on-write: the file is never changed, and torch gets a writable array (no warning).
    array = np.load(path, mmap_mode="c", allow_pickle=False)
    if array.dtype != np.uint8 or (shape is not None and tuple(array.shape) != tuple(shape)):
        raise ValueError("stale entry")
    if array.size:
        address = array.ctypes.data
        _MAPPED[address] = (str(path), int(array.offset), tuple(array.shape))
        weakref.finalize(array, _MAPPED.pop, address, None)
    return array


def decoded(
    key: dict[str, Any],
    shape: tuple[int, ...],
    fill: Callable[[Any], Any],
    what: str,
):
    """The uint8 array ``shape`` named by ``key``, memory-mapped, as ``(images, extra)``.

    On a miss, ``fill(out)`` is called with a writable uint8 memory-mapped array of ``shape`` and
    must write every element; whatever it returns (e.g. labels as an int64 numpy array, or None)
    is stored beside the images and returned as ``extra``. ``what`` names the data in errors.
    Returns torch tensors (``extra`` as a tensor when it is an array).
    """
    import numpy as np
    import torch

    folder = entry_dir()
    name = entry_key({**key, "shape": list(shape)})
    images_path, extra_path = folder / f"{name}.npy", folder / f"{name}.extra.npy"
    try:
        images = _open(images_path, shape)
        extra = np.load(extra_path, allow_pickle=False) if extra_path.is_file() else None
        return torch.from_numpy(images), None if extra is None else torch.from_numpy(extra)
    except (OSError, ValueError):
        pass
    tmp = folder / f".{name}.{os.getpid()}.tmp.npy"
    tmp_extra = folder / f".{name}.{os.getpid()}.tmp.extra.npy"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=tuple(shape))
        extra = fill(out)
        out.flush()
        del out
        if extra is not None:
            np.save(tmp_extra, np.asarray(extra), allow_pickle=False)
            os.replace(tmp_extra, extra_path)
        os.replace(tmp, images_path)
    except OSError as exc:
        raise ZooError(
            f"cannot keep the decoded {what} in {folder} ({exc.strerror or exc}); free disk space there "
            "or point XDG_CACHE_HOME at a disk with room"
        ) from None
    finally:
        for leftover in (tmp, tmp_extra):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
    images = _open(images_path, shape)
    return torch.from_numpy(images), None if extra is None else torch.from_numpy(np.asarray(extra))
