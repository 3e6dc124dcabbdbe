"""CelebA at 64x64 (``celeba64``): the aligned photographs, cropped and resized the usual way, decoded
once by worker processes into zoo's cache of decoded images and read back memory-mapped.

Files under the data root (torchvision's layout; the other annotation files are not needed)::

    celeba/list_eval_partition.txt          "000001.jpg 0" per line: 0 train, 1 validation, 2 test
    celeba/img_align_celeba/000001.jpg ...  202,599 aligned JPEGs of 178x218 pixels

Each image is centre-cropped to 148x148 and resized to 64x64 (bilinear, antialiased), as in
AntixK's PyTorch-VAE, with Pillow and torchvision's functional transforms. The train split is
partition 0 (162,770 images), the test split partition 2 (19,962); partition 1 (the 19,867
validation images) is used by neither, as with torchvision's ``split="train"`` / ``"test"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.downloads import attempt, files_not_found
from zoo.errors import ZooError

if TYPE_CHECKING:
    from torch import Tensor

PARTITIONS = {"train": 0, "test": 2}
#: Width and height of every aligned CelebA image (Pillow's order).
ALIGNED_SIZE = (178, 218)
CROP = 148
SIZE = 64
#: Images per batch handed back by a decoding worker.
BATCH = 64


def load_celeba(root: Path, split: str, download: bool, *, workers: int | None = None) -> tuple[Tensor, Tensor]:
    """The ``split`` images as uint8 ``[N, 3, 64, 64]`` (memory-mapped from the cache) and labels 0.

    ``workers``: processes decoding the JPEGs on the first load (default: one per available CPU).
    """
    import torch

    from zoo.image_cache import decoded

    folder = root / "celeba"
    images_dir, partition_file = folder / "img_align_celeba", folder / "list_eval_partition.txt"
    if download and not (partition_file.is_file() and images_dir.is_dir()):
        attempt(lambda: _download(root))
    missing = [name for name, path in (("list_eval_partition.txt", partition_file),) if not path.is_file()]
    if not images_dir.is_dir():
        missing.append("the folder img_align_celeba (extracted from img_align_celeba.zip)")
    if missing:
        raise files_not_found(
            "CelebA",
            missing,
            folder,
            "connect to the network with the gdown package installed so torchvision can download them",
        )
    wanted = [name for name, part in _read_partition(partition_file) if part == PARTITIONS[split]]
    if not wanted:
        raise ZooError(f"{partition_file} puts no image in partition {PARTITIONS[split]} ({split}); replace it")
    paths = [images_dir / name for name in wanted]
    key = {
        "dataset": "celeba64",
        "folder": str(images_dir.resolve()),
        "split": split,
        "files": _fingerprint(paths, images_dir, partition_file, split),
        "crop": CROP,
        "size": SIZE,
    }
    shape = (len(paths), 3, SIZE, SIZE)
    with decoding_lock(key):
        images, _ = decoded(key, shape, lambda out: _decode_all(paths, out, workers, split), f"CelebA {split} images")
    return images, torch.zeros(len(paths), dtype=torch.int64)


@contextlib.contextmanager
def decoding_lock(key: dict):
    """Held while a split is looked up in the cache or decoded into it: the processes of a torchrun
    job load the same split at once, and all but the first then wait and read what it decoded.

    Best effort: where the cache folder cannot be written, or there is no ``fcntl`` (Windows), there
    is no lock, and the cache reports its own errors.
    """
    from zoo.image_cache import entry_dir, entry_key

    handle = None
    try:
        import fcntl

        entry_dir().mkdir(parents=True, exist_ok=True)
        handle = open(entry_dir() / f".{entry_key(key)}.lock", "a")  # noqa: SIM115 - closed below
    except (ImportError, OSError):
        pass
    if handle is None:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # releases the lock


def _download(root: Path) -> None:
    from torchvision.datasets import CelebA

    CelebA(str(root), split="all", download=True)


def _read_partition(path: Path) -> list[tuple[str, int]]:
    """``(file name, partition)`` for every line of ``list_eval_partition.txt``."""
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise ZooError(f"{path} is not CelebA's list_eval_partition.txt (not plain text); replace it") from None
    except OSError as exc:
        raise ZooError(f"cannot read {path}: {exc.strerror or exc}") from None
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        name = fields[0]
        if (
            len(fields) != 2
            or fields[1] not in ("0", "1", "2")
            or not name.lower().endswith(".jpg")
            or name != os.path.basename(name)
            or name.startswith(".")
        ):
            raise ZooError(
                f"{path} line {n} is {line.strip()[:60]!r}, expected 'NAME.jpg PARTITION' with partition 0, 1 or 2; "
                "replace the file"
            )
        entries.append((name, int(fields[1])))
    return entries


def _fingerprint(paths: list[Path], images_dir: Path, partition_file: Path, split: str) -> str:
    """A hash of the images' names, sizes and modification times (a replaced image is decoded again)."""
    digest = hashlib.sha256()
    missing = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            missing.append(path.name)
            continue
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    if missing:
        raise ZooError(
            f"{len(missing)} of the {len(paths)} {split} images that {partition_file.name} lists are missing from "
            f"{images_dir} (first: {missing[0]}); extract img_align_celeba.zip there again"
        )
    return digest.hexdigest()


def _decode(path: Path):
    """One aligned image as uint8 ``[3, 64, 64]`` (numpy): decoded, centre-cropped, resized."""
    import numpy as np
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    with Image.open(path) as image:
        if image.format != "JPEG":
            raise ValueError(f"a {image.format} file, not a JPEG")
        if image.size != ALIGNED_SIZE:
            raise ValueError(f"{image.size[0]}x{image.size[1]} pixels, where CelebA's aligned images are 178x218")
        rgb = image.convert("RGB")  # decodes the whole file: a truncated one raises here
    square = F.resize(F.center_crop(rgb, [CROP, CROP]), [SIZE, SIZE], antialias=True)
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1)


class _Files:
    """The JPEGs as a map-style data set for torch's DataLoader: ``(index, image or None, error or None)``."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, _decode(self.paths[index]), None
        except Exception as exc:  # noqa: BLE001 - reported by the parent, naming the file
            return index, None, " ".join(str(exc).split()) or type(exc).__name__


def _as_list(batch):
    return batch


def default_workers() -> int:
    """One decoding process per CPU this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _decode_all(paths: list[Path], out, workers: int | None, split: str) -> None:
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    workers = default_workers() if workers is None else workers
    loader = DataLoader(
        _Files(paths),
        batch_size=BATCH,
        num_workers=workers if workers > 1 else 0,
        collate_fn=_as_list,
    )
    with tqdm(total=len(paths), desc=f"decoding CelebA {split} (once)", unit="image", disable=None) as bar:
        for batch in loader:
            for index, image, error in batch:
                if error is not None:
                    raise ZooError(
                        f"{paths[index]} cannot be read as a CelebA image ({error}); "
                        "replace it (extract img_align_celeba.zip again)"
                    )
                out[index] = image
            bar.update(len(batch))
