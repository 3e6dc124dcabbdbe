"""The data sets of two papers' own files: Frey Face (Kingma & Welling's AEVB) and the 28x28 Omniglot of
Burda et al.'s IWAE, both read from MATLAB files with scipy (Frey Face also from an IDX file).

Layout under the data root::

    FreyFaces/frey-faces-idx3-ubyte.gz   1,965 x 28 x 20, uint8 (or the same name without .gz)
    FreyFaces/frey_rawface.mat           or Sam Roweis's original: ``ff``, 560 x 1965 uint8
    Omniglot/chardata.mat                the IWAE repository's file: ``data`` (784 x 24,345),
                                         ``testdata`` (784 x 8,070), grey levels in [0, 1],
                                         ``target`` / ``testtarget`` (one-hot alphabets, 50 x N)

Frey Face has no official split; :func:`frey_split` defines a fixed one. Each column of
``frey_rawface.mat`` is one face, 28 rows of 20 pixels one row after the other (row-major); each
column of ``chardata.mat`` is one character, 28x28, column by column (MATLAB's order), which is how
the IWAE code reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.downloads import attempt, files_not_found
from zoo.errors import ZooError

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

OMNIGLOT_URL = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/chardata.mat"
FREY_URL = "https://cs.nyu.edu/~roweis/data/frey_rawface.mat"

FREY_COUNT = 1965
FREY_SHAPE = (28, 20)
#: Faces held out for the test split, and the seed of the permutation that picks them.
FREY_TEST, FREY_SEED = 200, 0


# -- reading .mat files ----------------------------------------------------------------------------


def _read_mat(path: Path, names: list[str], fix: str) -> dict[str, Any]:
    """The arrays ``names`` of the MATLAB file ``path``; a one-line error (ending in ``fix``) otherwise."""
    import scipy.io

    try:
        contents = scipy.io.loadmat(str(path), variable_names=names)
    except MemoryError:
        raise ZooError(f"not enough memory to read {path}; close other programs or use a larger machine") from None
    except Exception as exc:  # noqa: BLE001 - scipy raises many types for a damaged file
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ZooError(f"{path} is not a readable MATLAB file ({detail}); {fix}") from None
    for name in names:
        value = contents.get(name)
        if value is None or getattr(value, "ndim", 0) != 2 or value.dtype.kind not in "uif":
            raise ZooError(f"{path} holds no 2-d numeric array {name!r}; {fix}")
    return contents


def _as_uint8(values: np.ndarray, scale: float, path: Path, name: str, fix: str) -> np.ndarray:
    """``values * scale`` as uint8, which it must already be up to rounding."""
    import numpy as np

    scaled = values.astype(np.float64) * scale
    if not np.isfinite(scaled).all() or scaled.min(initial=0) < 0 or scaled.max(initial=0) > 255.5:
        top = "1" if scale != 1 else "255"
        raise ZooError(f"{path}: {name!r} holds values outside 0..{top}; {fix}")
    return np.rint(scaled).astype(np.uint8)


# -- Omniglot --------------------------------------------------------------------------------------

_OMNIGLOT_KEYS = {"train": ("data", "target"), "test": ("testdata", "testtarget")}


def load_omniglot(root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    """Omniglot as split by Burda et al.: uint8 ``[N, 1, 28, 28]`` and the alphabet (0..49) of each."""
    import numpy as np
    import torch

    folder = root / "Omniglot"
    path = folder / "chardata.mat"
    if not path.is_file() and download:
        attempt(lambda: _download_url(OMNIGLOT_URL, folder, path.name))
    if not path.is_file():
        raise files_not_found(
            "Omniglot",
            ["chardata.mat (from github.com/yburda/iwae, datasets/OMNIGLOT)"],
            folder,
            "connect to the network",
        )
    fix = "delete it and download chardata.mat from the IWAE repository again"
    images_key, labels_key = _OMNIGLOT_KEYS[split]
    contents = _read_mat(path, [images_key, labels_key], fix)
    data, target = contents[images_key], contents[labels_key]
    if data.shape[0] != 28 * 28:
        raise ZooError(f"{path}: {images_key!r} is {data.shape[0]} x {data.shape[1]}, expected 784 x N; {fix}")
    count = data.shape[1]
    if target.shape[1] != count:
        raise ZooError(
            f"{path}: {labels_key!r} labels {target.shape[1]} images but {images_key!r} holds {count}; {fix}"
        )
    # Each column is a 28x28 image stored column by column: transpose after a row-major reshape.
    pixels = _as_uint8(data, 255.0, path, images_key, fix).T.reshape(count, 28, 28).transpose(0, 2, 1)
    images = torch.from_numpy(np.ascontiguousarray(pixels)).unsqueeze(1)
    labels = torch.from_numpy(np.asarray(target).argmax(axis=0).astype(np.int64))
    return images, labels


# -- Frey Face -------------------------------------------------------------------------------------


def frey_split(split: str) -> np.ndarray:
    """The indices (into the 1,965 faces, ascending) of ``split``: the 200 faces first in
    ``numpy.random.RandomState(0).permutation(1965)`` are the test split, the other 1,765 the train split."""
    import numpy as np

    order = np.random.RandomState(FREY_SEED).permutation(FREY_COUNT)
    return np.sort(order[:FREY_TEST] if split == "test" else order[FREY_TEST:])


def load_frey_faces(root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    """Frey Face: uint8 ``[N, 1, 28, 20]`` of ``split`` (see :func:`frey_split`), labels all 0."""
    import torch

    faces = _frey_faces(root / "FreyFaces", download)
    index = torch.from_numpy(frey_split(split))
    images = faces[index].unsqueeze(1).contiguous()
    return images, torch.zeros(len(images), dtype=torch.int64)


def _frey_faces(folder: Path, download: bool) -> Tensor:
    """All 1,965 faces, ``[1965, 28, 20]``, from the IDX file if there is one, else from the .mat."""
    import torch

    from zoo.idx import read_idx

    idx = next(
        (p for p in (folder / "frey-faces-idx3-ubyte.gz", folder / "frey-faces-idx3-ubyte") if p.is_file()), None
    )
    mat = folder / "frey_rawface.mat"
    if idx is None and not mat.is_file() and download:
        attempt(lambda: _download_url(FREY_URL, folder, mat.name))
    if idx is not None:
        faces = read_idx(idx, 3)
        if tuple(faces.shape) != (FREY_COUNT, *FREY_SHAPE):
            raise ZooError(
                f"{idx} holds images shaped {tuple(faces.shape)}, expected {FREY_COUNT} faces of 28x20; "
                "is it the right file?"
            )
        return faces
    if not mat.is_file():
        raise files_not_found(
            "Frey Face",
            ["frey_rawface.mat (Sam Roweis's original) or frey-faces-idx3-ubyte.gz"],
            folder,
            "connect to the network",
        )
    fix = "replace it with Sam Roweis's frey_rawface.mat"
    ff = _read_mat(mat, ["ff"], fix)["ff"]
    if ff.shape != (FREY_SHAPE[0] * FREY_SHAPE[1], FREY_COUNT):
        raise ZooError(f"{mat}: 'ff' is {ff.shape[0]} x {ff.shape[1]}, expected 560 x 1965; {fix}")
    # One face per column, its 28 rows of 20 pixels one after the other.
    pixels = _as_uint8(ff, 1.0, mat, "ff", fix).T.reshape(FREY_COUNT, *FREY_SHAPE)
    return torch.from_numpy(pixels.copy())


def _download_url(url: str, folder: Path, name: str) -> None:
    from torchvision.datasets.utils import download_url

    download_url(url, str(folder), name)
