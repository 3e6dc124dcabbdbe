"""Data sets: what one is (:class:`DatasetInfo`), where their files are looked for, and the built-in list.

The built-in data sets are registered by this module acting as a plugin (it is listed in
:data:`zoo.plugins.DEFAULT_PLUGINS`), exactly as a third-party package registers its own; their
loaders live in other modules, imported on first use: :mod:`zoo.idx` (MNIST, Fashion-MNIST,
KMNIST), :mod:`zoo.datasets_torchvision` (CIFAR-10, SVHN), :mod:`zoo.celeba` (CelebA at 64x64),
:mod:`zoo.datasets_papers` (Omniglot, Frey Face) and :mod:`zoo.dsprites` (dSprites, with factors);
:mod:`zoo.downloads` is their shared download attempt and missing-files error.

Where files are looked for (first match wins): the ``data_dir`` argument (``--data-dir``), the
``ZOO_DATA`` environment variable, then a per-user cache (``$XDG_CACHE_HOME/zoo/data``, by
default ``~/.cache/zoo/data``).
"""

from __future__ import annotations

import os
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
    #: The ground-truth factors of variation, ``(name, number of values)`` each, for a set made from them
    #: (dSprites); empty otherwise. With them come two more ``"module:function"`` loaders, both called
    #: with ``(root, ..., download, **loader_options)``: ``factor_loader(root, split, download)`` returns
    #: each image's factor classes (int ``[N, F]``, in ``load``'s order) and ``factor_image_loader(root,
    #: classes, download)`` the uint8 images of any factor classes ``[M, F]``.
    factors: tuple[tuple[str, int], ...] = ()
    factor_loader: Any = None
    factor_image_loader: Any = None

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

    def load_factors(self, split: str, data_dir: str | os.PathLike | None = None, download: bool = True):
        """The factor classes (int64 numpy ``[N, F]``) of ``split``'s images; an error for a set without factors."""
        import numpy as np

        if split not in SPLITS:
            raise ZooError(f"unknown split {split!r}; use 'train' or 'test'")
        classes = np.asarray(self._factor_call("factor_loader")(resolve_data_dir(data_dir), split, download,
                                                                **self.loader_options), dtype=np.int64)  # fmt: skip
        if classes.ndim != 2 or classes.shape[1] != len(self.factors):
            raise ZooError(
                f"{self.id} {split}: the factor loader returned {classes.shape}, expected [N, {len(self.factors)}]"
            )
        return classes

    def images_for_factors(self, classes, data_dir: str | os.PathLike | None = None, download: bool = True) -> Tensor:
        """The uint8 images ``[M, *shape]`` of factor classes ``[M, F]``; an error for a set without factors."""
        images = self._factor_call("factor_image_loader")(
            resolve_data_dir(data_dir), classes, download, **self.loader_options
        )
        if tuple(images.shape[1:]) != tuple(self.shape) or len(images) != len(classes):
            raise ZooError(
                f"{self.id}: factor images shaped {tuple(images.shape)}, expected [{len(classes)}, *{self.shape}]"
            )
        return images

    def _factor_call(self, name: str):
        loader = getattr(self, name)
        if not self.factors or loader is None:
            raise ZooError(
                f"{self.id} has no ground-truth factors; disentanglement metrics need a data set with them (dsprites)"
            )
        if isinstance(loader, str):
            import importlib

            module, _, attr = loader.partition(":")
            loader = getattr(importlib.import_module(module), attr)
        return loader


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


BUILTIN_DATASETS = (
    DatasetInfo(
        "mnist",
        "MNIST handwritten digits, grey levels scaled to [0, 1]",
        (1, 28, 28),
        "zoo.idx:load_idx",
        {"folder": "MNIST", "torchvision_class": "MNIST"},
        {"train": 60000, "test": 10000},
    ),
    DatasetInfo(
        "binarized-mnist",
        "MNIST, dynamically binarized: every pixel redrawn as Bernoulli(grey level) each time it is used",
        (1, 28, 28),
        "zoo.idx:load_idx",
        {"folder": "MNIST", "torchvision_class": "MNIST"},
        {"train": 60000, "test": 10000},
        binarized=True,
    ),
    DatasetInfo(
        "fashion-mnist",
        "Fashion-MNIST clothing images, grey levels scaled to [0, 1]",
        (1, 28, 28),
        "zoo.idx:load_idx",
        {"folder": "FashionMNIST", "torchvision_class": "FashionMNIST"},
        {"train": 60000, "test": 10000},
    ),
    DatasetInfo(
        "kmnist",
        "Kuzushiji-MNIST cursive Japanese characters, grey levels scaled to [0, 1]",
        (1, 28, 28),
        "zoo.idx:load_idx",
        {"folder": "KMNIST", "torchvision_class": "KMNIST"},
        {"train": 60000, "test": 10000},
    ),
    DatasetInfo(
        "cifar10",
        "CIFAR-10 colour photographs of 10 classes, 32x32, levels scaled to [0, 1]",
        (3, 32, 32),
        "zoo.datasets_torchvision:load_torchvision",
        {
            "torchvision_class": "CIFAR10",
            "folder": "cifar-10-batches-py",
            "what": "CIFAR-10",
            "source": "extracted from cifar-10-python.tar.gz",
        },
        {"train": 50000, "test": 10000},
    ),
    DatasetInfo(
        "svhn",
        "SVHN house-number digits (cropped, train and test sets), 32x32 colour, levels scaled to [0, 1]",
        (3, 32, 32),
        "zoo.datasets_torchvision:load_torchvision",
        {"torchvision_class": "SVHN", "folder": "SVHN", "what": "SVHN", "source": "from the SVHN site, format 2"},
        {"train": 73257, "test": 26032},
    ),
    DatasetInfo(
        "celeba64",
        "CelebA aligned faces, centre crop 148 resized to 64x64, decoded once into the cache",
        (3, 64, 64),
        "zoo.celeba:load_celeba",
        {},
        {"train": 162770, "test": 19962},
        num_classes=1,
    ),
    DatasetInfo(
        "omniglot",
        "Omniglot characters of 50 alphabets, 28x28, Burda et al.'s split, grey levels scaled to [0, 1]",
        (1, 28, 28),
        "zoo.datasets_papers:load_omniglot",
        {},
        {"train": 24345, "test": 8070},
        num_classes=50,
    ),
    DatasetInfo(
        "binarized-omniglot",
        "Omniglot as in the IWAE paper, dynamically binarized: pixels redrawn as Bernoulli(grey level) at every use",
        (1, 28, 28),
        "zoo.datasets_papers:load_omniglot",
        {},
        {"train": 24345, "test": 8070},
        binarized=True,
        num_classes=50,
    ),
    DatasetInfo(
        "frey-faces",
        "Frey Face: 1,965 photographs of one face, 28x20 grey levels; a fixed 1,765 / 200 split",
        (1, 28, 20),
        "zoo.datasets_papers:load_frey_faces",
        {},
        {"train": 1765, "test": 200},
        num_classes=1,
    ),
    DatasetInfo(
        "dsprites",
        "dSprites: 737,280 binary 64x64 sprites from 5 factors (shape, scale, orientation, x, y); generated offline",
        (1, 64, 64),
        "zoo.dsprites:load_dsprites",
        {},
        {"train": 737280, "test": 10000},
        num_classes=3,
        factors=(("shape", 3), ("scale", 6), ("orientation", 40), ("posX", 32), ("posY", 32)),
        factor_loader="zoo.dsprites:load_factors",
        factor_image_loader="zoo.dsprites:images_for_factors",
    ),
    DatasetInfo(
        "dsprites-colour",
        "dSprites with each sprite in one of 6 colours on black (a sixth factor), 3x64x64; generated offline",
        (3, 64, 64),
        "zoo.dsprites:load_dsprites",
        {"colour": True},
        {"train": 737280, "test": 10000},
        num_classes=3,
        factors=(("colour", 6), ("shape", 3), ("scale", 6), ("orientation", 40), ("posX", 32), ("posY", 32)),
        factor_loader="zoo.dsprites:load_factors",
        factor_image_loader="zoo.dsprites:images_for_factors",
    ),
)


def __getattr__(name: str) -> Any:
    """The IDX reader's public names, which lived here before :mod:`zoo.idx` (``"zoo.data:load_idx"``)."""
    if name in ("load_idx", "MAX_IDX_BYTES"):
        from zoo import idx

        return getattr(idx, name)
    if name == "DOWNLOAD_TIMEOUT":
        from zoo import downloads

        return downloads.DOWNLOAD_TIMEOUT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_datasets(register):
    for info in BUILTIN_DATASETS:
        register(info)
