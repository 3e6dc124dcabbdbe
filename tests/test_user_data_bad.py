"""A user's own images as a data set: every bad input is a one-line ZooError that says what to do (or a
skip counted in one warning line), nothing in the user's folder is written, and the cache keeps no
half-written entry."""

from __future__ import annotations

import os
import shutil
import time
from collections import namedtuple

import numpy as np
import pytest
from helpers_user_data import cache, folder, pixels, snapshot, write  # noqa: F401 - cache is a fixture

from zoo import user_data
from zoo.errors import ZooError, ZooTypeError, ZooValueError
from zoo.user_data import dataset_from_path


def error(path, **kwargs) -> str:
    """The one-line message ``dataset_from_path(path, **kwargs)`` fails with; the folder is left as it was."""
    before = snapshot(path) if os.path.isdir(path) else None
    with pytest.raises(ZooError) as caught:
        dataset_from_path(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and message
    if before is not None:
        assert snapshot(path) == before
    return message


def no_entries_left(cache_folder) -> bool:
    decoded = cache_folder / "zoo" / "decoded"
    return not decoded.exists() or not [p for p in decoded.iterdir() if p.name.endswith(".npy")]


# -- paths and folders ---------------------------------------------------------------------------


def test_a_missing_path(tmp_path, cache):
    assert (
        error(tmp_path / "nope")
        == f"{tmp_path / 'nope'} does not exist; give a folder of images or an .npy / .npz file"
    )


def test_a_file_that_is_neither_folder_nor_array(tmp_path, cache):
    write(tmp_path / "one.png", pixels(0, 4, 4))
    assert "is neither a folder nor an .npy / .npz file" in error(tmp_path / "one.png")


def test_an_empty_folder(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    assert error(tmp_path / "empty") == (
        f"{tmp_path / 'empty'} holds no images (PNG, JPEG, BMP, WebP); give a folder with image files in it "
        "(or in class folders)"
    )


def test_a_folder_with_only_other_files(tmp_path, cache):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    (tmp_path / "docs" / "data.csv").write_text("1,2")
    (tmp_path / "docs" / ".hidden.png").write_bytes(b"hidden files are not read")
    assert "holds no images (PNG, JPEG, BMP, WebP); it holds 2 other files, e.g. data.csv" in error(tmp_path / "docs")


@pytest.mark.parametrize(
    ("name", "content"),
    [("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40), ("notes.jpg", b"this is text, not a JPEG")],
)
def test_a_file_that_is_not_an_image_is_skipped_or_stops(tmp_path, cache, capsys, name, content):
    folder(tmp_path / "d", 9, size=(8, 8))
    (tmp_path / "d" / name).write_bytes(content)
    info = dataset_from_path(tmp_path / "d")
    assert sum(info.split_sizes.values()) == 9
    lines = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(lines) == 1 and lines[0].startswith(
        f"warning: skipped 1 of 10 image files that could not be read (e.g. {name}: "
    )
    message = error(tmp_path / "d", on_bad="stop")
    assert message.startswith(f"{name} is not a readable image (")
    assert message.endswith("); remove or replace it, or skip such files (on_bad='skip')")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp"])
def test_a_truncated_image_is_skipped_or_stops(tmp_path, cache, capsys, suffix):
    folder(tmp_path / "t", 9, size=(32, 32), suffix=suffix)
    whole = (tmp_path / "t" / f"img-004{suffix}").read_bytes()
    (tmp_path / "t" / f"img-004{suffix}").write_bytes(whole[: len(whole) // 2])
    info = dataset_from_path(tmp_path / "t", test_fraction=0.2)
    assert sum(info.split_sizes.values()) == 8  # the split is drawn over 9 files, then one is left out
    assert "warning: skipped 1 of 9 image files that could not be read (e.g. img-004" in capsys.readouterr().err
    assert error(tmp_path / "t", on_bad="stop", test_fraction=0.2).startswith(
        f"img-004{suffix} is not a readable image"
    )


def test_a_stopped_decode_leaves_no_cache_entry(tmp_path, cache):
    folder(tmp_path / "t", 4, size=(16, 16))
    whole = (tmp_path / "t" / "img-002.png").read_bytes()
    (tmp_path / "t" / "img-002.png").write_bytes(whole[:-30])
    error(tmp_path / "t", on_bad="stop", test_fraction=0.25)
    assert no_entries_left(cache)
    assert not [p for p in (cache / "zoo" / "decoded").iterdir() if ".tmp" in p.name]


def test_worker_processes_skip_and_stop_alike(tmp_path, cache, monkeypatch, capsys):
    from zoo import image_folder

    monkeypatch.setattr(image_folder, "POOL_MIN_FILES", 2)
    monkeypatch.setattr(image_folder, "CHUNK", 3)
    folder(tmp_path / "w", 11, size=(16, 16))
    whole = (tmp_path / "w" / "img-007.png").read_bytes()
    (tmp_path / "w" / "img-007.png").write_bytes(whole[: len(whole) // 2])
    assert error(tmp_path / "w", on_bad="stop", test_fraction=0.2).startswith("img-007.png is not a readable image (")
    assert no_entries_left(cache)
    assert sum(dataset_from_path(tmp_path / "w", test_fraction=0.2).split_sizes.values()) == 10
    assert "warning: skipped 1 of 11 image files that could not be read (e.g. img-007.png: " in capsys.readouterr().err


def test_only_unreadable_files(tmp_path, cache):
    for i in range(3):
        (tmp_path / "bad").mkdir(exist_ok=True)
        (tmp_path / "bad" / f"{i}.png").write_bytes(b"no")
    assert error(tmp_path / "bad", test_fraction=0.5).startswith(
        f"none of the 3 image files in {tmp_path / 'bad'} could be read (e.g. 0.png: "
    )


def test_a_split_left_empty_by_unreadable_files(tmp_path, cache):
    folder(tmp_path / "s" / "train", 3, size=(8, 8))
    (tmp_path / "s" / "test").mkdir()
    write(tmp_path / "s" / "test" / "ok.png", pixels(1, 8, 8))
    whole = (tmp_path / "s" / "test" / "ok.png").read_bytes()
    (tmp_path / "s" / "test" / "ok.png").write_bytes(whole[: len(whole) // 2])
    assert (
        error(tmp_path / "s")
        == f"{tmp_path / 's'} has no readable test images; add some (every split needs at least one)"
    )


def test_a_link_loop_ends(tmp_path, cache):
    folder(tmp_path / "loop" / "a", 4, size=(8, 8))
    folder(tmp_path / "loop" / "b", 4, size=(8, 8), seed=9)
    (tmp_path / "loop" / "a" / "back").symlink_to(tmp_path / "loop", target_is_directory=True)
    (tmp_path / "loop" / "b" / "self").symlink_to(tmp_path / "loop" / "b", target_is_directory=True)
    (tmp_path / "loop" / "b" / "x.png").symlink_to(tmp_path / "loop" / "b" / "x.png")  # a link to itself
    started = time.monotonic()
    info = dataset_from_path(tmp_path / "loop", test_fraction=0.25)
    assert time.monotonic() - started < 60
    assert info.classes == ("a", "b") and sum(info.split_sizes.values()) == 8  # each folder read once
    assert "x.png is not a readable image" in error(tmp_path / "loop", test_fraction=0.25, on_bad="stop")


def test_images_both_in_class_folders_and_outside(tmp_path, cache):
    folder(tmp_path / "m" / "cats", 3, size=(8, 8))
    write(tmp_path / "m" / "stray.png", pixels(3, 8, 8))
    assert error(tmp_path / "m") == (
        f"{tmp_path / 'm'} holds images both in class folders (cats) and outside them (e.g. stray.png); "
        "move those into a class folder or remove them"
    )


def test_a_train_folder_without_a_test_folder(tmp_path, cache):
    folder(tmp_path / "h" / "train", 3, size=(8, 8))
    assert error(tmp_path / "h") == (
        f"{tmp_path / 'h'} has a train/ folder but no test/; add test/ (the two give the split) or rename train/"
    )


def test_empty_train_and_test_folders(tmp_path, cache):
    (tmp_path / "e" / "train").mkdir(parents=True)
    (tmp_path / "e" / "test").mkdir()
    write(tmp_path / "e" / "elsewhere.png", pixels(0, 4, 4))
    assert error(tmp_path / "e") == (
        f"{tmp_path / 'e'}/train and {tmp_path / 'e'}/test hold no images; put the images in them "
        "(in class folders or directly)"
    )


def test_an_unreadable_folder(tmp_path, cache, monkeypatch):
    folder(tmp_path / "p" / "locked", 2, size=(8, 8))
    scandir = os.scandir

    def refuse(path):  # as for a folder without read permission (which root could read anyway)
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    assert error(tmp_path / "p") == (
        f"cannot read the folder {tmp_path / 'p' / 'locked'}: Permission denied; check its permissions"
    )


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [0, -3, (0, 8), (8, -1), (8, 8, 8), ()])
def test_image_size_must_be_positive(tmp_path, cache, image_size):
    folder(tmp_path / "d", 4, size=(8, 8))
    with pytest.raises(ZooValueError, match=r"^image_size must be a whole number of pixels of at least 1"):
        dataset_from_path(tmp_path / "d", image_size=image_size)


@pytest.mark.parametrize("image_size", ["32", 1.5, True])
def test_image_size_must_be_a_number(tmp_path, cache, image_size):
    folder(tmp_path / "d", 4, size=(8, 8))
    with pytest.raises(ZooTypeError, match=r"^image_size must be"):
        dataset_from_path(tmp_path / "d", image_size=image_size)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, "0.1", None, True])
def test_test_fraction_must_lie_between_0_and_1(tmp_path, cache, fraction):
    folder(tmp_path / "d", 4, size=(8, 8))
    with pytest.raises(ZooValueError, match=r"^test_fraction must be a number between 0 and 1, both excluded"):
        dataset_from_path(tmp_path / "d", test_fraction=fraction)


@pytest.mark.parametrize(("fraction", "empty"), [(0.05, "test"), (0.95, "train")])
def test_a_test_fraction_leaving_an_empty_split(tmp_path, cache, fraction, empty):
    folder(tmp_path / "few", 5, size=(8, 8))
    assert error(tmp_path / "few", test_fraction=fraction) == (
        f"test_fraction {fraction} of the 5 images in {tmp_path / 'few'} leaves the {empty} split empty; "
        "choose a fraction that keeps at least one image on each side, or add images"
    )
    np.save(tmp_path / "few.npy", np.zeros((5, 4, 4), np.uint8))
    assert "leaves the" in error(tmp_path / "few.npy", test_fraction=fraction)


def test_other_settings(tmp_path, cache):
    folder(tmp_path / "d", 4, size=(8, 8))
    with pytest.raises(ZooValueError, match="on_bad must be 'skip' or 'stop'"):
        dataset_from_path(tmp_path / "d", on_bad="ignore")
    with pytest.raises(ZooValueError, match="split_seed must be a whole number, 0 or more"):
        dataset_from_path(tmp_path / "d", split_seed=-1)
    with pytest.raises(ZooTypeError, match="path must be a folder or an .npy / .npz file name"):
        dataset_from_path(123)
    with pytest.raises(ZooValueError, match="path is empty"):
        dataset_from_path("")


# -- the cache's disk ----------------------------------------------------------------------------


def test_a_data_set_too_big_for_the_cache_disk(tmp_path, cache, monkeypatch):
    folder(tmp_path / "d", 10, size=(8, 8))
    np.save(tmp_path / "a.npy", np.zeros((10, 8, 8), np.uint8))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    for path in (tmp_path / "d", tmp_path / "a.npy"):
        message = error(path)
        assert message.startswith("the decoded images of ") and "but only 0.00 GB are free" in message
        assert message.endswith("free disk space there or point XDG_CACHE_HOME at a disk with room")
    assert no_entries_left(cache)
    assert not [p for p in (cache / "zoo" / "decoded").iterdir() if ".tmp" in p.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "cache", "d"]


def test_an_unwritable_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(user_data, "_READ", {})
    (tmp_path / "not-a-folder").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    folder(tmp_path / "d", 4, size=(8, 8))
    assert "free disk space there or point XDG_CACHE_HOME at a disk with room" in error(
        tmp_path / "d", test_fraction=0.5
    )


# -- arrays --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "hint"),
    [
        (np.zeros((4, 8, 8), np.float32), "holds float32 values; zoo reads uint8 images (0 to 255): for values in [0, 1] save (x * 255).round().astype(np.uint8)"),
        (np.zeros((4, 8, 8), np.uint16), "holds uint16 values; zoo reads uint8 images (0 to 255): for 16-bit images save (x >> 8).astype(np.uint8)"),
        (np.zeros((4, 8, 8), np.int64), "holds int64 values; zoo reads uint8 images (0 to 255): save x.astype(np.uint8) if its values lie in 0..255"),
    ],
)  # fmt: skip
def test_an_array_of_the_wrong_dtype(tmp_path, cache, array, hint):
    np.save(tmp_path / "x.npy", array)
    assert error(tmp_path / "x.npy") == f"{tmp_path / 'x.npy'} {hint}"


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        ((8, 8), "is a 2-d array (8, 8); zoo reads images as N,H,W (grey), N,H,W,C or N,C,H,W"),
        ((2, 3, 8, 8, 1), "is a 5-d array"),
        ((4, 3, 8, 3), "cannot tell whether"),
        ((4, 1, 8, 1), "cannot tell whether"),
        ((4, 8, 8, 4), "has no channel axis of 1 (grey) or 3 (colour) entries"),
        ((0, 8, 8), "holds no images"),
    ],
)
def test_an_array_of_the_wrong_shape(tmp_path, cache, shape, problem):
    np.save(tmp_path / "x.npy", np.zeros(shape, np.uint8))
    assert problem in error(tmp_path / "x.npy")


def test_an_npz_without_a_usable_array(tmp_path, cache):
    np.savez(tmp_path / "two.npz", faces=np.zeros((4, 8, 8), np.uint8), masks=np.zeros((4, 8, 8), np.uint8))
    assert error(tmp_path / "two.npz") == (
        f"{tmp_path / 'two.npz'} has no array zoo can use (its arrays: faces, masks); name the images 'images' "
        "(with optional 'labels'), or give 'train' and 'test' arrays"
    )
    np.savez(tmp_path / "none.npz")
    assert "(its arrays: none)" in error(tmp_path / "none.npz")
    np.savez(tmp_path / "labels-only.npz", labels=np.arange(4))
    assert "has no array zoo can use" in error(tmp_path / "labels-only.npz")


def test_bad_labels(tmp_path, cache):
    images = np.zeros((4, 8, 8), np.uint8)
    for labels in (np.arange(3), np.array([0.5, 1, 2, 3]), np.array([-1, 0, 1, 2])):
        np.savez(tmp_path / "l.npz", images=images, labels=labels)
        assert "one label per image" in error(tmp_path / "l.npz")


def test_files_that_are_not_arrays(tmp_path, cache):
    (tmp_path / "x.npy").write_bytes(b"not numpy at all")
    assert error(tmp_path / "x.npy").startswith(f"{tmp_path / 'x.npy'} is not a readable .npy file (")
    (tmp_path / "y.npz").write_bytes(b"not a zip")
    assert error(tmp_path / "y.npz").startswith(f"{tmp_path / 'y.npz'} is not a readable .npz file (")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    assert error(tmp_path / "o.npy").startswith(f"{tmp_path / 'o.npy'} is not a readable .npy file (")


# -- many files ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_hundred_thousand_tiny_files(tmp_path, cache):
    """100,000 8x8 PNGs in 10 class folders: read (headers, then decoding in worker processes), then
    read again from the cache without opening a file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(10):
        (tmp_path / "big" / f"c{c}").mkdir(parents=True)
    for i in range(100_000):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "big" / f"c{i % 10}" / f"{i}.png")
    info = dataset_from_path(tmp_path / "big")
    assert info.split_sizes == {"train": 90_000, "test": 10_000} and info.num_classes == 10
    user_data._READ.clear()
    started = time.monotonic()
    again = dataset_from_path(tmp_path / "big")
    assert again == info and time.monotonic() - started < 60
    labels = info.load("train")[1]
    assert labels.bincount().tolist() == pytest.approx([9000] * 10, abs=300)
