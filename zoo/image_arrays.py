"""An ``.npy`` or ``.npz`` file of uint8 images read as a data set: its arrays found and checked,
their layout told apart (``N,H,W``, ``N,H,W,C`` or ``N,C,H,W``), and the images copied once, chunk
by chunk, into a memory-mapped ``N,C,H,W`` array in zoo's cache (:mod:`zoo.image_cache`).

An ``.npy`` file is read memory-mapped, so it is never loaded whole; an ``.npz`` member cannot be
memory-mapped and is read whole, one array at a time.

Which arrays an ``.npz`` file gives (first match wins):

- ``train`` and ``test`` (or ``x_train`` and ``x_test``): the two splits, with optional labels
  ``train_labels`` / ``test_labels`` (or ``y_train`` / ``y_test``);
- ``images``, or the file's only array: all images, split by the seed, with optional ``labels``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.user_data import UserImages, check_room, check_splits, test_mask

FORMAT_VERSION = 1
#: Bytes of images copied at a time.
CHUNK_BYTES = 64 << 20
SPLIT_KEYS = (("train", "test", "train_labels", "test_labels"), ("x_train", "x_test", "y_train", "y_test"))
CHANNELS = (1, 3)


def layout(shape: tuple[int, ...], where: str) -> str:
    """``"NHW"``, ``"NHWC"`` or ``"NCHW"`` for an array of ``shape``.

    Rank 3 is ``N,H,W`` (grey). In rank 4 the channel axis is the one of axes 1 and 3 that holds 1
    or 3 entries; when both do (``N,3,H,3``, ``N,1,H,1``), the layout cannot be told and is an error.
    """
    if len(shape) == 3:
        return "NHW"
    if len(shape) != 4:
        raise ZooError(
            f"{where} is a {len(shape)}-d array {shape}; zoo reads images as N,H,W (grey), N,H,W,C or N,C,H,W "
            "with C 1 (grey) or 3 (colour)"
        )
    first, last = shape[1] in CHANNELS, shape[3] in CHANNELS
    if first and last:
        raise ZooError(
            f"cannot tell whether {where}, shaped {shape}, is N,C,H,W or N,H,W,C (axes 1 and 3 both have 1 or 3 "
            "entries); store grey images as N,H,W, or use a folder of image files"
        )
    if not (first or last):
        raise ZooError(
            f"{where}, shaped {shape}, has no channel axis of 1 (grey) or 3 (colour) entries; zoo reads N,H,W, "
            "N,H,W,C or N,C,H,W (drop an alpha channel with x[..., :3])"
        )
    return "NHWC" if last else "NCHW"


def image_shape(shape: tuple[int, ...], kind: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of one image of an array shaped ``shape`` in layout ``kind``."""
    if kind == "NHW":
        return (1, shape[1], shape[2])
    return (shape[3], shape[1], shape[2]) if kind == "NHWC" else (shape[1], shape[2], shape[3])


def as_nchw(block, kind: str):
    """A block of rows of an array in layout ``kind`` as a contiguous ``N,C,H,W`` numpy array."""
    import numpy as np

    if kind == "NHW":
        block = block[:, None]
    elif kind == "NHWC":
        block = block.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(block)


def _check_images(array, where: str) -> str:
    import numpy as np

    if array.dtype != np.uint8:
        hints = {
            "f": "for values in [0, 1] save (x * 255).round().astype(np.uint8)",
            "u": "for 16-bit images save (x >> 8).astype(np.uint8)",
        }
        hint = hints.get(array.dtype.kind, "save x.astype(np.uint8) if its values lie in 0..255")
        raise ZooError(f"{where} holds {array.dtype} values; zoo reads uint8 images (0 to 255): {hint}")
    kind = layout(tuple(array.shape), where)
    if array.shape[0] == 0:
        raise ZooError(f"{where} holds no images; give an array with at least one image")
    return kind


def _check_labels(labels, count: int, where: str):
    import numpy as np

    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != count or labels.dtype.kind not in "iu" or (count and labels.min() < 0):
        raise ZooError(
            f"{where} must hold {count} whole numbers 0 or more, one label per image (got {labels.dtype} "
            f"{labels.shape}); fix or remove it"
        )
    return labels.astype(np.int64)


def _read_npy(path: Path):
    import numpy as np

    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ZooError(f"{path} is not a readable .npy file ({exc}); save it with numpy.save") from None


def _parts(path: Path) -> list[tuple[str | None, Any, Any, str]]:
    """``(split or None, images, labels or None, where)`` for each array of images the file gives."""
    import numpy as np

    if path.suffix.lower() == ".npy":
        return [(None, _read_npy(path), None, str(path))]
    try:
        archive = np.load(path, allow_pickle=False)
        keys = list(archive.files)
    except (ValueError, OSError, EOFError) as exc:
        raise ZooError(f"{path} is not a readable .npz file ({exc}); save it with numpy.savez") from None

    def member(key: str):
        try:
            return archive[key]
        except (ValueError, OSError, EOFError) as exc:
            raise ZooError(f"{path}: the array {key!r} cannot be read ({exc}); save the file again") from None

    for train, test, train_labels, test_labels in SPLIT_KEYS:
        if train in keys and test in keys:
            return [
                (split, member(key), member(labels) if labels in keys else None, f"{path}[{key!r}]")
                for split, key, labels in (("train", train, train_labels), ("test", test, test_labels))
            ]
    candidates = [k for k in keys if k != "labels"]
    key = "images" if "images" in keys else candidates[0] if len(candidates) == 1 else None
    if key is None:
        found = ", ".join(keys) if keys else "none"
        raise ZooError(
            f"{path} has no array zoo can use (its arrays: {found}); name the images 'images' (with optional "
            "'labels'), or give 'train' and 'test' arrays"
        )
    return [(None, member(key), member("labels") if "labels" in keys else None, f"{path}[{key!r}]")]


def read_arrays(
    path: Path, *, image_size: list[int] | None, test_fraction: float, split_seed: int, on_bad: str
) -> UserImages:
    """The images of an array file, copied into the cache on the first read (see the module's doc)."""
    import numpy as np

    from zoo.image_cache import decoded

    parts = []
    for split, images, labels, where in _parts(path):
        kind = _check_images(images, where)
        labels = None if labels is None else _check_labels(labels, len(images), where.replace("[", " labels [", 1))
        parts.append((split, images, labels, kind, where))
    shapes = {image_shape(images.shape, kind) for _, images, _, kind, _ in parts}
    channels = {s[0] for s in shapes}
    if len(channels) > 1:
        raise ZooError(f"the train and test images of {path} differ in channels (1 and 3); store both alike")
    channel = channels.pop()
    size = tuple(image_size) if image_size else image_shape(parts[0][1].shape, parts[0][3])[1:]
    rows = []  # (part, index in part, test)
    if parts[0][0] is None:
        count = len(parts[0][1])
        mask = test_mask([str(i) for i in range(count)], test_fraction, split_seed, str(path))
        rows = [(0, i, False) for i in np.flatnonzero(~mask)] + [(0, i, True) for i in np.flatnonzero(mask)]
    else:
        rows = [(p, i, split == "test") for p, (split, images, *_) in enumerate(parts) for i in range(len(images))]
    stat = os.stat(path)
    key = {
        "kind": "arrays",
        "version": FORMAT_VERSION,
        "path": str(path),
        "bytes": stat.st_size,
        "mtime": stat.st_mtime_ns,
        "image_size": list(size),
    }
    if parts[0][0] is None:
        key.update(test_fraction=test_fraction, split_seed=split_seed)

    def fill(out):
        check_room(out, f"images of {path}")
        start = 0
        for n, part in enumerate(parts):  # rows are grouped by part, in order
            indices = [i for p, i, _ in rows if p == n]
            per_chunk = max(1, CHUNK_BYTES // max(out[0].nbytes, part[1][0].nbytes))
            for first in range(0, len(indices), per_chunk):
                _copy(out, start + first, part, indices[first : first + per_chunk], size)
            start += len(indices)
        labels = [0 if parts[p][2] is None else parts[p][2][i] for p, i, _ in rows]
        return np.array([labels, [int(test) for _, _, test in rows]], dtype=np.int64)

    images, extra = decoded(key, (len(rows), channel, *size), fill, f"images of {path}")
    labels = extra[0]
    num_classes = int(labels.max()) + 1 if any(p[2] is not None for p in parts) else 1
    data = UserImages(path.name, images, labels, int((extra[1] == 0).sum()), (), num_classes)
    return check_splits(data, str(path))


def _copy(out, start: int, part, indices: list[int], size: tuple[int, int]) -> None:
    """Rows ``indices`` of one part's images, as ``N,C,H,W`` of ``size``, into ``out[start:]``."""
    import numpy as np
    import torch

    from zoo.image_decode import fit

    _, images, _, kind, _ = part
    block = as_nchw(images[np.asarray(indices, dtype=np.int64)], kind)
    if tuple(block.shape[-2:]) != tuple(size):
        block = fit(torch.from_numpy(block), size).numpy()
    out[start : start + len(indices)] = block
