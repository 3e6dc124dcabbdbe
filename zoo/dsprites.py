"""dSprites (Matthey et al. 2017): 737,280 binary 64x64 images of one sprite each, with the five factors
that made them, generated here from the data set's definition or read from the original file.

The definition (the ``deepmind/dsprites-dataset`` README): shape (square, ellipse, heart), scale (6
values evenly spaced in [0.5, 1]), orientation (40 values evenly spaced in [0, 2 pi]), posX and posY
(32 values each, evenly spaced in [0, 1]); every combination once, in row-major order of
(shape, scale, orientation, posX, posY), so image ``i`` has the factor classes ``unravel_index(i, SIZES)``.

Rendering (this module's, not the original's pixels): the 720 (shape, scale, orientation) sprites are
drawn once on a 32x32 canvas, 4x4 supersampled, a pixel set where at least half of it is covered; each
image is that sprite shifted by whole pixels, its centre at column ``16 + posX class`` and row
``16 + posY class`` (so from 16 to 47). At scale 1 the square's side is 20 pixels, the ellipse's axes
20 and 10, the heart about 20 wide; orientation turns the sprite counter-clockwise as displayed.

When ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` is in ``<data root>/dSprites/`` (or the data
root itself), its images and ``latents_classes`` are used instead. Either way the images are written
once into zoo's cache (:mod:`zoo.image_cache`) as uint8 0/255 and read back memory-mapped; the 3 GB
are never held in memory.

Splits: ``train`` is every image (as disentanglement work trains); ``test`` is a fixed sample of
them, the first ``min(10,000, N // 10)`` of ``numpy.random.RandomState(0).permutation(N)``, in that
order, so it is not held out and any first part of it (``zoo eval --limit N``) is a random sample
too (in the file's order the first images are all small squares). ``dsprites-colour`` paints each image's sprite in one of :data:`COLOURS` on
black, the colour a sixth factor drawn once per image (``RandomState(1)``), so colour is independent
of the other factors but not crossed with them.
"""

from __future__ import annotations

import functools
import math
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.errors import ZooError

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

FACTORS = (("shape", 3), ("scale", 6), ("orientation", 40), ("posX", 32), ("posY", 32))
COLOURS = (
    ("red", (255, 0, 0)),
    ("green", (0, 255, 0)),
    ("blue", (0, 0, 255)),
    ("yellow", (255, 255, 0)),
    ("magenta", (255, 0, 255)),
    ("cyan", (0, 255, 255)),
)
COLOUR_FACTORS = (("colour", len(COLOURS)), *FACTORS)
SIZES = tuple(size for _, size in FACTORS)
COUNT = math.prod(SIZES)  # 737,280
NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
TEST_COUNT, TEST_SEED, COLOUR_SEED = 10_000, 0, 1
#: Sprite canvas, supersampling, and the half-side of the square at scale 1, in pixels.
CANVAS, SUPERSAMPLE, RADIUS = 32, 4, 10.0
#: Version of the rendering: a change to it renders the cached images again.
RENDER_VERSION = 1


# -- the factors -------------------------------------------------------------------------------------


def all_classes() -> np.ndarray:
    """The factor classes of the 737,280 images in the data set's order: int64 ``[N, 5]``."""
    import numpy as np

    return np.stack(np.unravel_index(np.arange(COUNT), SIZES), axis=1).astype(np.int64)


def factor_values(classes: np.ndarray) -> np.ndarray:
    """The factor values (the original's ``latents_values`` without colour) of classes ``[N, 5]``:
    shape 1..3, scale in [0.5, 1], orientation in [0, 2 pi], posX and posY in [0, 1]."""
    import numpy as np

    classes = np.asarray(classes)
    grids = (
        np.arange(1.0, 4.0),
        np.linspace(0.5, 1.0, 6),
        np.linspace(0.0, 2 * np.pi, 40),
        np.linspace(0.0, 1.0, 32),
        np.linspace(0.0, 1.0, 32),
    )
    return np.stack([grid[classes[:, i]] for i, grid in enumerate(grids)], axis=1)


def test_indices(count: int = COUNT) -> np.ndarray:
    """The indices of the test split among ``count`` images, in random order (see the module docstring)."""
    import numpy as np

    return np.random.RandomState(TEST_SEED).permutation(count)[: min(TEST_COUNT, count // 10)]


def colour_classes(count: int = COUNT) -> np.ndarray:
    """Each image's colour class (0..5) in ``dsprites-colour``."""
    import numpy as np

    return np.random.RandomState(COLOUR_SEED).randint(0, len(COLOURS), size=count).astype(np.int64)


# -- rendering ---------------------------------------------------------------------------------------


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u right, v up, in units of the sprite's radius) lie in ``shape``."""
    if shape == 0:  # square, side 2
        return (abs(u) <= 1.0) & (abs(v) <= 1.0)
    if shape == 1:  # ellipse, semi-axes 1 and 0.5
        return u**2 + (v / 0.5) ** 2 <= 1.0
    # heart: (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 spans about 2.3 wide; scaled to about 2
    x, y = u * 1.15, v * 1.15 - 0.1
    return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0


@functools.lru_cache(maxsize=1)
def sprites() -> np.ndarray:
    """The 720 sprites, uint8 0/1 ``[3, 6, 40, 32, 32]`` (shape, scale, orientation, row, column),
    centred at (16, 16) of the canvas."""
    import numpy as np

    offsets = (np.arange(CANVAS * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - CANVAS / 2
    x, y = np.meshgrid(offsets, -offsets)  # y up
    out = np.zeros((3, 6, 40, CANVAS, CANVAS), dtype=np.uint8)
    for k, scale in enumerate(np.linspace(0.5, 1.0, 6)):
        radius = RADIUS * scale
        for o, angle in enumerate(np.linspace(0.0, 2 * np.pi, 40)):
            # The sprite turned by +angle: a point is inside if turning it back by -angle lands inside.
            c, s = math.cos(angle), math.sin(angle)
            u, v = (c * x + s * y) / radius, (-s * x + c * y) / radius
            for shape in range(3):
                cover = _inside(shape, u, v).reshape(CANVAS, SUPERSAMPLE, CANVAS, SUPERSAMPLE).mean(axis=(1, 3))
                out[shape, k, o] = cover >= 0.5
    return out


def render(classes: np.ndarray) -> np.ndarray:
    """The images of factor classes ``[N, 5]`` (shape, scale, orientation, posX, posY): uint8 0/1 ``[N, 64, 64]``."""
    import numpy as np

    classes = np.asarray(classes, dtype=np.int64)
    if classes.ndim != 2 or classes.shape[1] != len(SIZES) or ((classes < 0) | (classes >= SIZES)).any():
        raise ZooError(f"dSprites factor classes must be [N, 5] within {SIZES}; got an array shaped {classes.shape}")
    table = sprites()
    out = np.zeros((len(classes), 64, 64), dtype=np.uint8)
    for n, (shape, scale, orientation, px, py) in enumerate(classes):
        out[n, py : py + CANVAS, px : px + CANVAS] = table[shape, scale, orientation]
    return out


def _fill_generated(out: np.ndarray) -> None:
    """Every image, 0/255, into ``out`` ``[737280, 1, 64, 64]``: one block of 1,024 positions per sprite."""
    import numpy as np

    table = sprites()
    block = np.zeros((32, 32, 64, 64), dtype=np.uint8)
    for start, (shape, scale, orientation) in enumerate(np.ndindex(3, 6, 40)):
        block[:] = 0
        sprite = table[shape, scale, orientation] * np.uint8(255)
        for px in range(32):
            for py in range(32):
                block[px, py, py : py + CANVAS, px : px + CANVAS] = sprite
        out[start * 1024 : (start + 1) * 1024, 0] = block.reshape(1024, 64, 64)


# -- the original file -------------------------------------------------------------------------------


def find_original(root: Path) -> Path | None:
    """The original ``.npz`` under ``root/dSprites`` or ``root``, if there is one."""
    for candidate in (root / "dSprites" / NPZ_NAME, root / NPZ_NAME):
        if candidate.is_file():
            return candidate
    return None


def _original_classes(path: Path) -> np.ndarray:
    """``latents_classes`` of the original file without its colour column: int64 ``[N, 5]``, checked."""
    import numpy as np

    fix = f"replace it with {NPZ_NAME} from github.com/deepmind/dsprites-dataset"
    try:
        with np.load(path, allow_pickle=False) as npz:
            classes = np.asarray(npz["latents_classes"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ZooError(f"{path} holds no readable 'latents_classes' ({type(exc).__name__}); {fix}") from None
    if classes.ndim != 2 or classes.shape[1] != 6 or classes.dtype.kind not in "iu":
        raise ZooError(f"{path}: 'latents_classes' is shaped {classes.shape}, expected [N, 6] integers; {fix}")
    classes = classes[:, 1:].astype(np.int64)
    if ((classes < 0) | (classes >= SIZES)).any():
        raise ZooError(f"{path}: 'latents_classes' holds classes outside {SIZES}; {fix}")
    return classes


def _fill_original(path: Path, count: int):
    """A ``fill`` for :func:`zoo.image_cache.decoded`: the file's ``imgs`` streamed in chunks, 0/1 -> 0/255."""
    import numpy as np

    fix = f"replace it with {NPZ_NAME} from github.com/deepmind/dsprites-dataset"

    def fill(out: np.ndarray) -> None:
        try:
            with zipfile.ZipFile(path) as archive, archive.open("imgs.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(f)
                if tuple(shape) != (count, 64, 64) or fortran or dtype.kind not in "ub" or dtype.itemsize != 1:
                    raise ZooError(f"{path}: 'imgs' is {dtype} {tuple(shape)}, expected uint8 [{count}, 64, 64]; {fix}")
                for start in range(0, count, 8192):
                    rows = min(8192, count - start)
                    chunk = np.frombuffer(f.read(rows * 4096), dtype=np.uint8)
                    if chunk.size != rows * 4096 or chunk.max(initial=0) > 1:
                        raise ZooError(f"{path}: 'imgs' is truncated or holds values other than 0 and 1; {fix}")
                    out[start : start + rows, 0] = chunk.reshape(rows, 64, 64) * np.uint8(255)
        except (KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise ZooError(f"{path} holds no readable 'imgs' array ({type(exc).__name__}); {fix}") from None

    return fill


# -- the data set ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _source(root: Path) -> tuple[Path | None, np.ndarray | None]:
    """(the original file or None, its factor classes or None when it is the full grid in order)."""
    import numpy as np

    path = find_original(root)
    if path is None:
        return None, None
    classes = _original_classes(path)
    if len(classes) == COUNT and np.array_equal(classes, all_classes()):
        return path, None
    return path, classes


def _grey(root: Path) -> Tensor:
    """All images (uint8 0/255 ``[N, 1, 64, 64]``, memory-mapped from the cache), original or generated."""
    from zoo.image_cache import decoded

    path, classes = _source(root)
    if path is None:
        key = {"dataset": "dsprites", "render": RENDER_VERSION}
        images, _ = decoded(key, (COUNT, 1, 64, 64), _fill_generated, "dSprites images")
        return images
    count = COUNT if classes is None else len(classes)
    stat = path.stat()
    key = {"dataset": "dsprites-original", "path": str(path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns}
    images, _ = decoded(key, (count, 1, 64, 64), _fill_original(path, count), "dSprites images")
    return images


def _classes(root: Path) -> np.ndarray:
    path, classes = _source(root)
    return all_classes() if classes is None else classes


def _colour(root: Path) -> Tensor:
    """``dsprites-colour``'s images, uint8 ``[N, 3, 64, 64]``, painted from the grey ones into the cache."""
    import numpy as np

    from zoo.image_cache import decoded

    grey = _grey(root)
    palette = np.array([rgb for _, rgb in COLOURS], dtype=np.uint16)
    colours = colour_classes(len(grey))

    def fill(out: np.ndarray) -> None:
        for start in range(0, len(grey), 4096):
            chunk = grey[start : start + 4096].numpy().astype(np.uint16)  # [n, 1, 64, 64], 0/255
            rgb = palette[colours[start : start + 4096]][:, :, None, None]  # [n, 3, 1, 1]
            out[start : start + len(chunk)] = (chunk * rgb // 255).astype(np.uint8)

    path, _ = _source(root)
    key = {"dataset": "dsprites-colour", "render": RENDER_VERSION, "source": str(path), "colour_seed": COLOUR_SEED}
    if path is not None:
        key["mtime"] = path.stat().st_mtime_ns
    images, _ = decoded(key, (len(grey), 3, 64, 64), fill, "coloured dSprites images")
    return images


def load_dsprites(root: Path, split: str, download: bool, colour: bool = False) -> tuple[Tensor, Tensor]:
    """Images of ``split`` (uint8 ``[N, 1 or 3, 64, 64]``, 0 or the colour's level) and their shape class
    (0 square, 1 ellipse, 2 heart) as labels. Nothing is downloaded: the set is generated when the
    original file is absent."""
    import torch

    if split == "test":  # rendered (or read) directly: eval never needs the whole set built
        factors = load_factors(root, split, download, colour)
        return images_for_factors(root, factors, download, colour), torch.from_numpy(factors[:, int(colour)].copy())
    images = _colour(root) if colour else _grey(root)
    return images, torch.from_numpy(_classes(root)[:, 0].copy())


def load_factors(root: Path, split: str, download: bool, colour: bool = False) -> np.ndarray:
    """The factor classes (int64 ``[N, 5]``, or ``[N, 6]`` with colour first) of ``split``'s images, in order."""
    import numpy as np

    classes = _classes(root)
    if colour:
        classes = np.concatenate([colour_classes(len(classes))[:, None], classes], axis=1)
    return classes[test_indices(len(classes))] if split == "test" else classes


def images_for_factors(root: Path, classes: np.ndarray, download: bool, colour: bool = False) -> Tensor:
    """Images of the given factor classes (``[M, 5]``, or ``[M, 6]`` with colour first), uint8 like
    :func:`load_dsprites`'; with colour, any colour of any sprite (rendered on the fly)."""
    import numpy as np
    import torch

    classes = np.asarray(classes, dtype=np.int64)
    sizes = tuple(size for _, size in (COLOUR_FACTORS if colour else FACTORS))
    if classes.ndim != 2 or classes.shape[1] != len(sizes) or ((classes < 0) | (classes >= sizes)).any():
        raise ZooError(f"factor classes must be [M, {len(sizes)}] within {sizes}; got an array shaped {classes.shape}")
    sprite = classes[:, 1:] if colour else classes
    path, known = _source(root)
    if path is None:
        images = torch.from_numpy(render(sprite) * np.uint8(255)).unsqueeze(1)
        return _paint(images, classes[:, 0]) if colour else images
    grey = _grey(root)
    flat = np.ravel_multi_index(tuple(sprite.T), SIZES)
    if known is not None:  # a file that is not the full grid in order: find each combination in it
        keys = np.ravel_multi_index(tuple(known.T), SIZES)
        order = np.argsort(keys, kind="stable")
        at = np.searchsorted(keys[order], flat).clip(0, len(keys) - 1)
        if (keys[order][at] != flat).any():
            raise ZooError(f"{path} does not hold every combination of factors asked for; use the complete file")
        flat = order[at]
    images = grey[torch.from_numpy(flat)]
    return _paint(images, classes[:, 0]) if colour else images


def _paint(images: Tensor, colours: np.ndarray) -> Tensor:
    """Grey 0/255 images ``[M, 1, 64, 64]`` in colours ``[M]`` (classes of :data:`COLOURS`): uint8 ``[M, 3, 64, 64]``."""
    import torch

    palette = torch.tensor([rgb for _, rgb in COLOURS], dtype=torch.int32)[torch.from_numpy(colours)]
    return (images.int() * palette[:, :, None, None] // 255).to(torch.uint8)
