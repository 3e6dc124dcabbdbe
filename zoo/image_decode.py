"""One image file read into a uint8 ``[C, H, W]`` array of a chosen size and channel count.

Headers are read with Pillow (size and mode, without decoding the pixels). PNG, JPEG and WebP
files are decoded by ``torchvision.io`` (faster than Pillow for them; 16-bit PNGs come back as
uint16 and are scaled to 8 bits); BMP files, images with transparency and anything torchvision
refuses, by Pillow. An alpha
channel is composited on white; palette images become RGB. A file whose size differs from the
target is resized (shorter side to the target, antialiased) and centre-cropped with
``torchvision.transforms.v2.functional``.

:func:`decode_rows` is what a worker process runs: it decodes a list of files straight into rows
of the memory-mapped array being filled, and returns only the failures.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

#: File name endings read as images (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: Those that torchvision.io decodes; the others go through Pillow.
TORCHVISION_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")

#: Pillow modes holding one grey channel (possibly with alpha); every other mode is colour
#: (RGB, RGBA, CMYK, YCbCr, and palette images, which are converted to RGB).
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ALPHA_MODES = frozenset({"LA", "La", "RGBA", "RGBa", "PA"})


class Header(NamedTuple):
    height: int
    width: int
    colour: bool
    alpha: bool


def read_header(path: str) -> Header | str:
    """The size and mode of an image file from its header, or why it is not a readable image."""
    from PIL import Image

    try:
        with Image.open(path, formats=PILLOW_FORMATS) as image:
            width, height = image.size
            alpha = image.mode in ALPHA_MODES or "transparency" in image.info
            return Header(height, width, image.mode not in GREY_MODES, alpha)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a readable image", reported by name
        return _reason(exc)


def read_headers(paths: list[str]) -> list[Header | str]:
    """:func:`read_header` of each path (what a worker process runs for a chunk of files)."""
    return [read_header(p) for p in paths]


def _reason(exc: BaseException) -> str:
    from PIL import UnidentifiedImageError

    from zoo.errors import first_line

    if isinstance(exc, UnidentifiedImageError):  # its message repeats the file's path
        return "not a PNG, JPEG, BMP or WebP image"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return first_line(exc)


def fit(image, size: tuple[int, int]):
    """``image`` (a uint8 tensor ``[C, H, W]``) resized so that its shorter side matches the target's
    (antialiased), then centre-cropped to ``size``; returned as it is when it already has that size."""
    import torchvision.transforms.v2.functional as F

    height, width = size
    if tuple(image.shape[-2:]) == (height, width):
        return image
    scale = max(height / image.shape[-2], width / image.shape[-1])
    resized = (max(height, round(image.shape[-2] * scale)), max(width, round(image.shape[-1] * scale)))
    image = F.resize(image, list(resized), antialias=True)
    return F.center_crop(image, [height, width])


def _composite_on_white(image):
    """An image with its last channel as alpha, composited on white and without that channel."""
    import torch

    colour, alpha = image[:-1].to(torch.int32), image[-1:].to(torch.int32)
    return ((colour * alpha + 255 * (255 - alpha) + 127) // 255).to(torch.uint8)


_TORCHVISION: list[Any] = []  # [decode_image, modes by (channels, alpha)], or [None] without torchvision.io


def _torchvision_decoder():
    """torchvision.io's decoder (deprecated there in favour of TorchCodec, so looked up once and
    optional: without it every file goes through Pillow)."""
    if not _TORCHVISION:
        try:
            from torchvision.io import ImageReadMode, decode_image

            modes = {(1, False): ImageReadMode.GRAY, (3, False): ImageReadMode.RGB}
            modes.update({(1, True): ImageReadMode.GRAY_ALPHA, (3, True): ImageReadMode.RGB_ALPHA})
            _TORCHVISION.extend([decode_image, modes])
        except ImportError:
            _TORCHVISION.extend([None, None])
    return _TORCHVISION


def _with_torchvision(path: str, channels: int, alpha: bool):
    import torch
    import torchvision.transforms.v2.functional as F

    decode_image, modes = _torchvision_decoder()
    if decode_image is None:
        raise ValueError("torchvision.io cannot decode images here")
    with open(path, "rb") as f:
        data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    image = decode_image(data, mode=modes[channels, alpha], apply_exif_orientation=True)
    if image.dtype != torch.uint8:  # a 16-bit PNG: scaled, not clipped
        image = F.to_dtype(image, torch.uint8, scale=True)
    return image


def _with_pillow(path: str, channels: int, alpha: bool):
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    with Image.open(path, formats=PILLOW_FORMATS) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grey: keep the top 8 bits
            image = Image.fromarray((np.asarray(image).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8))
        mode = ("LA" if channels == 1 else "RGBA") if alpha else ("L" if channels == 1 else "RGB")
        if alpha and image.mode == "P":
            image = image.convert("RGBA")
        array = np.asarray(image.convert(mode))
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def decode(path: str, channels: int, size: tuple[int, int], alpha: bool):
    """The image at ``path`` as a uint8 tensor ``[channels, *size]``; raises if it cannot be decoded.

    ``alpha``: the file has an alpha channel (or a transparent colour), composited on white.
    """
    try:
        if alpha or not path.lower().endswith(TORCHVISION_SUFFIXES):
            # Pillow reads a transparent colour (tRNS) as alpha too, which torchvision.io ignores.
            raise ValueError("a file for Pillow")
        image = _with_torchvision(path, channels, alpha)
    except Exception:  # noqa: BLE001 - Pillow gets a second try and explains its own failure
        image = _with_pillow(path, channels, alpha)
    if alpha:
        image = _composite_on_white(image)
    return fit(image, size)


def decode_rows(task: dict[str, Any]) -> list[tuple[int, str]]:
    """Decode ``task["files"]`` (``(row, path, alpha)``) into those rows of the ``.npy`` file
    ``task["array"]`` (opened memory-mapped here), each as ``task["channels"]`` x ``task["size"]``.
    Returns ``(row, reason)`` for each file that could not be decoded (its row is left as it was)."""
    import numpy as np

    out = task.get("out")
    if out is None:
        out = np.lib.format.open_memmap(task["array"], mode="r+")
    failures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision.io's, once per image otherwise
        for row, path, alpha in task["files"]:
            try:
                out[row] = decode(path, task["channels"], tuple(task["size"]), alpha).numpy()
            except Exception as exc:  # noqa: BLE001 - a bad file is reported (or skipped) by its name
                failures.append((row, _reason(exc)))
    if task.get("out") is None:
        out.flush()
    return failures


def worker_init() -> None:
    """Each decoding worker uses one CPU thread: the parallelism is across files."""
    import torch

    torch.set_num_threads(1)
