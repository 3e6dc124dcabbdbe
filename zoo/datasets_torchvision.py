"""CIFAR-10 and SVHN: read and downloaded by torchvision's own classes, which know the files'
formats, URLs and published MD5 checksums; this module finds the files, explains what is missing or
damaged in one line, and hands back uint8 tensors ``[N, 3, 32, 32]``.

Layout under the data root (what torchvision downloads):

- CIFAR-10: ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5``, ``test_batch`` and
  ``batches.meta`` (the python version, extracted from ``cifar-10-python.tar.gz``);
- SVHN: ``SVHN/train_32x32.mat`` and ``SVHN/test_32x32.mat`` (the cropped digits, format 2; the
  ``extra`` set is not used).

torchvision checks every file's MD5 before it reads it (CIFAR-10's batches are pickles, so nothing
else is ever unpickled).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.downloads import attempt, files_not_found
from zoo.errors import ZooError

if TYPE_CHECKING:
    from torch import Tensor


def _files(tv_class, split: str) -> list[tuple[str, str]]:
    """``(file name, MD5)`` of what the torchvision class reads for ``split``, including shared files."""
    if hasattr(tv_class, "split_list"):  # SVHN: one .mat file per split
        _, name, md5 = tv_class.split_list[split]
        return [(name, md5)]
    # CIFAR-10 checks all six batches and the metadata whichever split is asked for.
    return [*tv_class.train_list, *tv_class.test_list, (tv_class.meta["filename"], tv_class.meta["md5"])]


def _construct(tv_class, root: Path, split: str, download: bool):
    if hasattr(tv_class, "split_list"):
        return tv_class(str(root), split=split, download=download)
    return tv_class(str(root), train=split == "train", download=download)


def load_torchvision(
    root: Path, split: str, download: bool, *, torchvision_class: str, folder: str, what: str, source: str
) -> tuple[Tensor, Tensor]:
    """A torchvision data set of 32x32 colour images as uint8 ``[N, 3, 32, 32]`` and int64 labels.

    ``folder`` is where torchvision's class finds its files under ``root`` (``cifar-10-batches-py``
    for CIFAR-10, whose class is handed ``root`` itself; ``SVHN``, which is handed as the class's
    root because SVHN keeps its files directly there). ``source`` names where the files come from.
    """
    import numpy as np
    import torch

    tv_class = getattr(importlib.import_module("torchvision.datasets"), torchvision_class)
    base = root / folder
    class_root = base if hasattr(tv_class, "split_list") else root
    files = _files(tv_class, split)
    missing = [name for name, _ in files if not (base / name).is_file()]
    if missing and download:
        attempt(lambda: _construct(tv_class, class_root, split, download=True))
        missing = [name for name, _ in files if not (base / name).is_file()]
    if missing:
        raise files_not_found(what, [*missing[:-1], f"{missing[-1]} ({source})"], base)
    try:
        dataset = _construct(tv_class, class_root, split, download=False)
    except RuntimeError:
        raise _damaged(files, base) from None
    except MemoryError:
        raise ZooError(f"not enough memory to read {base}; close other programs or use a larger machine") from None
    except Exception as exc:  # noqa: BLE001 - a file that passed its checksum yet cannot be read
        raise ZooError(f"cannot read {what} from {base} ({type(exc).__name__}: {exc}); replace the files") from None
    images = torch.from_numpy(np.ascontiguousarray(dataset.data))
    if hasattr(dataset, "targets"):  # CIFAR-10 holds [N, H, W, C] and a list of labels
        images, labels = images.permute(0, 3, 1, 2), dataset.targets
    else:  # SVHN: already [N, C, H, W], labels 0..9 (torchvision maps the file's 10 to 0)
        labels = dataset.labels
    return images.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.int64)


def _damaged(files: list[tuple[str, str]], base: Path) -> ZooError:
    """The error for files that fail torchvision's checksum test, naming the first of them."""
    from torchvision.datasets.utils import check_integrity

    for name, md5 in files:
        if not check_integrity(str(base / name), md5):
            return ZooError(
                f"{base / name} is damaged or not the published file (its MD5 differs from {md5}); "
                "delete it and download it again"
            )
    return ZooError(f"torchvision refused the files in {base}; delete them and download them again")
