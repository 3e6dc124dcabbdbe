"""A user's own images as a data set: :func:`dataset_from_path` turns a folder of images or an
``.npy`` / ``.npz`` array file into a :class:`zoo.data.DatasetInfo`, decoded once into zoo's cache.

This module checks the settings, splits the images into train and test the same way in every
process, and is the loader of the data sets it returns (:func:`load_split`); reading folders is
:mod:`zoo.image_folder`'s job, reading arrays :mod:`zoo.image_arrays`'s.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError, ZooTypeError, ZooValueError, is_count

if TYPE_CHECKING:
    from torch import Tensor

    from zoo.data import DatasetInfo

ON_BAD = ("skip", "stop")
ARRAY_SUFFIXES = (".npy", ".npz")
#: Bytes left free on the cache's disk beyond what the decoded images take.
FREE_MARGIN = 64 << 20


@dataclass(frozen=True)
class UserImages:
    """A user's images as read: every image in ``images`` (train rows first, then test rows)."""

    name: str  # the folder's or file's name, for the data set's id
    images: Tensor  # uint8 [N, C, H, W], memory-mapped from the cache
    labels: Tensor  # int64 [N]
    train_count: int
    classes: tuple[str, ...] = ()
    num_classes: int = 1

    def split(self, split: str) -> tuple[Tensor, Tensor]:
        rows = slice(0, self.train_count) if split == "train" else slice(self.train_count, len(self.labels))
        return self.images[rows], self.labels[rows]


def warn(message: str) -> None:
    """One warning line on stderr, as zoo's other warnings."""
    print(f"warning: {message}", file=sys.stderr)


def image_size_problem(image_size: object) -> str | None:
    if image_size is None:
        return None
    sizes = [image_size] if not isinstance(image_size, (tuple, list)) else list(image_size)
    if len(sizes) not in (1, 2) or not all(is_count(s) for s in sizes):
        return f"image_size must be a whole number of pixels of at least 1, or (height, width) (got {image_size!r})"
    return None


def normalise_image_size(image_size: Any) -> list[int] | None:
    """``None``, or ``[height, width]`` from an int (a square) or a pair."""
    if image_size is None:
        return None
    sizes = list(image_size) if isinstance(image_size, (tuple, list)) else [image_size]
    return [int(sizes[0]), int(sizes[-1])]  # a one-element list is a square too


def _check_settings(path: Any, image_size: Any, test_fraction: Any, split_seed: Any, on_bad: Any) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise ZooTypeError(f"path must be a folder or an .npy / .npz file name (got {type(path).__name__})")
    if not str(path):
        raise ZooValueError("path is empty; give a folder of images or an .npy / .npz file")
    problem = image_size_problem(image_size)
    if problem:
        raise (ZooTypeError if isinstance(image_size, (str, float, bool)) else ZooValueError)(problem)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ZooValueError(f"test_fraction must be a number between 0 and 1, both excluded (got {test_fraction!r})")
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
        raise ZooValueError(f"split_seed must be a whole number, 0 or more (got {split_seed!r})")
    if on_bad not in ON_BAD:
        raise ZooValueError(f"on_bad must be 'skip' or 'stop' (got {on_bad!r})")


def test_mask(names: Sequence[str], fraction: float, seed: int, where: str):
    """Which of ``names`` (unique, stable names: relative paths or row numbers) go to the test split:
    the ``round(len * fraction)`` names whose hash with ``seed`` is smallest. It depends on nothing
    but the names, the fraction and the seed, so every process (and every version of every library)
    draws the same split, and adding an image moves at most one other across."""
    import numpy as np

    count = round(len(names) * fraction)
    if count == 0 or count == len(names):
        empty = "test" if count == 0 else "train"
        raise ZooValueError(
            f"test_fraction {fraction} of the {len(names)} images in {where} leaves the {empty} split empty; "
            "choose a fraction that keeps at least one image on each side, or add images"
        )
    keys = [hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest() for name in names]
    order = sorted(range(len(names)), key=keys.__getitem__)
    mask = np.zeros(len(names), dtype=bool)
    mask[order[:count]] = True
    return mask


def check_room(out, what: str) -> None:
    """Stop before decoding into ``out`` (a memory-mapped array just created, still sparse) when its
    disk has no room for it: writing into a memory map on a full disk would crash the process."""
    folder = Path(out.filename).parent
    free = shutil.disk_usage(folder).free
    if free < out.nbytes + FREE_MARGIN:
        raise ZooError(
            f"the decoded {what} need {out.nbytes / 1e9:.2f} GB in {folder} but only {free / 1e9:.2f} GB are free; "
            "free disk space there or point XDG_CACHE_HOME at a disk with room"
        )


def check_splits(data: UserImages, where: str) -> UserImages:
    test_count = len(data.labels) - data.train_count
    for split, count in (("train", data.train_count), ("test", test_count)):
        if count == 0:
            raise ZooError(f"{where} has no readable {split} images; add some (every split needs at least one)")
    return data


_READ: dict[str, UserImages] = {}  # the data sets read in this process, by their source


def _source_key(source: dict[str, Any]) -> str:
    import json

    return json.dumps(source, sort_keys=True)


def read(source: dict[str, Any]) -> UserImages:
    """The images ``source`` names, read (decoding them into the cache if they are not there yet)."""
    path = Path(source["path"])
    options = {k: source[k] for k in ("image_size", "test_fraction", "split_seed", "on_bad")}
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as exc:
        raise ZooError(f"cannot read {path}: {exc.strerror or exc}") from None
    if is_dir:
        from zoo.image_folder import read_folder

        data = read_folder(path, **options)
    elif path.suffix.lower() in ARRAY_SUFFIXES and exists:
        from zoo.image_arrays import read_arrays

        data = read_arrays(path, **options)
    elif not exists:
        raise ZooError(f"{path} does not exist; give a folder of images or an .npy / .npz file")
    else:
        raise ZooError(
            f"{path} is neither a folder nor an .npy / .npz file; give a folder of images (PNG, JPEG, BMP, WebP) "
            "or an array file"
        )
    _READ[_source_key(source)] = data
    return data


def dataset_from_path(
    path: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    on_bad: str = "skip",
) -> DatasetInfo:
    """A data set of the images at ``path``: a folder of images (class folders give labels,
    ``train/`` and ``test/`` give the split) or an ``.npy`` / ``.npz`` file of uint8 images.

    ``image_size``: an int (square) or ``(height, width)`` every image is resized and centre-cropped
    to; by default images of one size keep it, and mixed sizes go to the most common one.
    ``test_fraction`` / ``split_seed``: the seeded split used when the files do not give one.
    ``on_bad``: ``"skip"`` leaves unreadable image files out (one warning line counts them),
    ``"stop"`` stops at the first, naming it. The returned info's ``source`` (also its
    ``loader_options``) is plain JSON that rebuilds the same data set: ``dataset_from_path(**source)``.
    """
    from zoo.data import DatasetInfo

    _check_settings(path, image_size, test_fraction, split_seed, on_bad)
    source = {
        "path": os.path.abspath(os.path.expanduser(os.fspath(path))),
        "image_size": normalise_image_size(image_size),
        "test_fraction": float(test_fraction),
        "split_seed": int(split_seed),
        "on_bad": on_bad,
    }
    data = read(source)
    shape = tuple(int(s) for s in data.images.shape[1:])
    train, test = data.train_count, len(data.labels) - data.train_count
    classes = f", {len(data.classes)} classes ({', '.join(data.classes)})" if data.classes else ""
    description = (
        f"{train + test} images ({train} train, {test} test){classes}, "
        f"{'x'.join(map(str, shape))}, from {source['path']}"
    )
    return DatasetInfo(
        f"files:{data.name}",
        description,
        shape,
        "zoo.user_data:load_split",
        dict(source),
        {"train": train, "test": test},
        num_classes=data.num_classes,
        source=dict(source),
        classes=data.classes,
    )


def load_split(
    root: Path | None,
    split: str,
    download: bool = False,
    *,
    path: str,
    image_size: list[int] | None,
    test_fraction: float,
    split_seed: int,
    on_bad: str,
) -> tuple[Tensor, Tensor]:
    """The loader of the data sets :func:`dataset_from_path` returns (``root`` and ``download`` are
    not used: the source names its files). Images already read in this process are not read again."""
    source = {
        "path": path,
        "image_size": image_size,
        "test_fraction": test_fraction,
        "split_seed": split_seed,
        "on_bad": on_bad,
    }
    data = _READ.get(_source_key(source))
    if data is None:
        _check_settings(path, image_size, test_fraction, split_seed, on_bad)
        data = read(source)
    return data.split(split)
