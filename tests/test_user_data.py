"""A user's own images as a data set (zoo.dataset_from_path): folders of PNG, JPEG, BMP and WebP files,
.npy and .npz arrays, sizes and modes, labels from class folders, the split, and the decoding cache.
Bad input is in tests/test_user_data_bad.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from helpers_user_data import cache, chw, folder, forget, pixels, write  # noqa: F401 - cache is a fixture
from PIL import Image

import zoo
from zoo import image_folder
from zoo.data import DatasetInfo
from zoo.user_data import dataset_from_path, load_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def everything(info: DatasetInfo) -> tuple[torch.Tensor, torch.Tensor]:
    train, test = info.load("train"), info.load("test")
    return torch.cat([train[0], test[0]]), torch.cat([train[1], test[1]])


def names_of(images: torch.Tensor, sources: dict[str, np.ndarray]) -> list[str]:
    """The name of the source each image equals exactly (every image must equal one)."""
    found = []
    for image in images.numpy():
        hits = [name for name, array in sources.items() if np.array_equal(chw(array), image)]
        assert len(hits) == 1, "an image equals no source image"
        found.append(hits[0])
    return found


def test_a_folder_of_colour_pngs(tmp_path, cache):
    sources = folder(tmp_path / "pets", 20)
    info = zoo.dataset_from_path(tmp_path / "pets")
    assert isinstance(info, DatasetInfo)
    assert info.id == "files:pets" and "20 images" in info.description
    assert info.shape == (3, 40, 40) and info.classes == () and info.num_classes == 1
    assert info.split_sizes == {"train": 18, "test": 2}
    images, labels = everything(info)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert labels.tolist() == [0] * 20
    assert sorted(names_of(images, sources)) == sorted(sources)  # every image once, pixels exact


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp"])
def test_each_format(tmp_path, cache, suffix):
    sources = folder(tmp_path / "imgs", 10, size=(24, 32), suffix=suffix)
    images, _ = everything(dataset_from_path(tmp_path / "imgs"))
    assert images.shape == (10, 3, 24, 32)
    if suffix == ".jpg":  # lossy: close to the source, on average
        shown = sorted(images.float().mean(dim=(1, 2, 3)).tolist())
        expected = sorted(float(a.mean()) for a in sources.values())
        assert np.allclose(shown, expected, atol=3)
    else:
        assert sorted(names_of(images, sources)) == sorted(sources)


def test_grey_and_non_square_images_keep_their_size(tmp_path, cache):
    sources = folder(tmp_path / "g", 10, size=(28, 20), channels=1)
    info = dataset_from_path(tmp_path / "g", test_fraction=0.3)
    assert info.shape == (1, 28, 20) and info.split_sizes == {"train": 7, "test": 3}
    assert sorted(names_of(everything(info)[0], sources)) == sorted(sources)


def test_formats_mixed_in_one_folder(tmp_path, cache):
    for i, suffix in enumerate([".png", ".bmp", ".webp", ".jpg", ".png"]):
        write(tmp_path / "m" / f"{i}{suffix}", pixels(i, 16, 16))
    assert dataset_from_path(tmp_path / "m", test_fraction=0.2).split_sizes == {"train": 4, "test": 1}


def test_mixed_sizes_go_to_the_most_common_one(tmp_path, cache, capsys):
    folder(tmp_path / "s", 5, size=(40, 40))
    big = write(tmp_path / "s" / "big.png", pixels(99, 60, 90))
    info = dataset_from_path(tmp_path / "s", test_fraction=0.2)
    assert info.shape == (3, 40, 40)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: the images have 2 sizes; 1 were resized and centre-cropped to 40x40, the most common "
        "(set image_size to choose the size)"
    ]
    # The odd one: shorter side to 40 (antialiased), then the centre 40x40, as torchvision does it.
    expected = F.center_crop(F.resize(torch.from_numpy(chw(big).copy()), [40, 60], antialias=True), [40, 40])
    images, _ = everything(info)
    assert any(torch.equal(image, expected) for image in images)


@pytest.mark.parametrize(("image_size", "shape"), [(32, (3, 32, 32)), ((20, 30), (3, 20, 30)), ([16, 8], (3, 16, 8))])
def test_image_size_resizes_and_crops_every_image(tmp_path, cache, image_size, shape):
    sources = folder(tmp_path / "s", 6, size=(40, 48))
    info = dataset_from_path(tmp_path / "s", image_size=image_size, test_fraction=0.5)
    assert info.shape == shape
    assert info.source["image_size"] == list(shape[1:])
    height, width = shape[1:]
    scale = max(height / 40, width / 48)
    resized = [max(height, round(40 * scale)), max(width, round(48 * scale))]
    expected = [F.center_crop(F.resize(torch.from_numpy(chw(a).copy()), resized, antialias=True), [height, width])
                for a in sources.values()]  # fmt: skip
    images, _ = everything(info)
    assert all(any(torch.equal(image, e) for e in expected) for image in images)


def test_grey_and_colour_mixed_go_to_the_majority_with_one_warning(tmp_path, cache, capsys):
    colour = folder(tmp_path / "mix", 3, size=(8, 8), channels=3)
    grey = {f"g{i}.png": write(tmp_path / "mix" / f"g{i}.png", pixels(10 + i, 8, 8, 1)) for i in range(2)}
    info = dataset_from_path(tmp_path / "mix", test_fraction=0.2)
    assert info.shape == (3, 8, 8)
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if "converted" in line] == [
        "warning: converted 2 of the 5 images from grey to colour (the mode of most images; a tie goes to colour)"
    ]
    images, _ = everything(info)
    as_rgb = {name: np.repeat(a[:, :, None], 3, axis=2) for name, a in grey.items()}
    assert sorted(names_of(images, {**colour, **as_rgb})) == sorted([*colour, *grey])

    folder(tmp_path / "mostly-grey", 3, size=(8, 8), channels=1)
    write(tmp_path / "mostly-grey" / "c.png", pixels(5, 8, 8, 3))
    assert dataset_from_path(tmp_path / "mostly-grey", test_fraction=0.25).shape == (1, 8, 8)
    assert "converted 1 of the 4 images from colour to grey" in capsys.readouterr().err


def test_sixteen_bit_pngs_are_scaled_not_clipped(tmp_path, cache):
    values = np.array([[0, 255, 256, 1000], [32768, 40000, 65280, 65535]], dtype=np.uint16)
    for i in range(4):
        Image.fromarray(values).save(tmp_path / f"{i}.png")
    info = dataset_from_path(tmp_path, test_fraction=0.25)
    images, _ = everything(info)
    assert info.shape == (1, 2, 4)
    assert images[0, 0].tolist() == (values >> 8).tolist()  # 65535 -> 255, 32768 -> 128, not all 255


def test_alpha_is_composited_on_white_and_palettes_become_rgb(tmp_path, cache):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: as it is
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white
    rgba[1, 0] = (0, 0, 0, 128)  # half: half-way to white
    rgba[1, 1] = (200, 100, 0, 255)
    write(tmp_path / "a" / "x.png", rgba, "RGBA")
    write(tmp_path / "a" / "y.webp", rgba, "RGBA")
    palette = Image.new("P", (2, 2))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    palette.save(tmp_path / "a" / "z.png")
    images, _ = everything(dataset_from_path(tmp_path / "a", test_fraction=0.4))
    expected_rgba = [[[10, 255], [127, 200]], [[20, 255], [127, 100]], [[30, 255], [127, 0]]]
    assert sum(image.tolist() == expected_rgba for image in images) == 2
    assert sum(image.tolist() == [[[255, 255], [255, 0]], [[0, 0], [0, 255]], [[0, 0], [0, 0]]] for image in images)

    grey_alpha = np.array([[[50, 255], [50, 0]]], dtype=np.uint8).reshape(1, 2, 2)
    for i in range(2):
        write(tmp_path / "la" / f"{i}.png", grey_alpha, "LA")
    la, _ = everything(dataset_from_path(tmp_path / "la", test_fraction=0.5))
    assert la.shape == (2, 1, 1, 2) and la[0].flatten().tolist() == [50, 255]


def test_a_transparent_colour_is_composited_on_white(tmp_path, cache):
    keyed = pixels(3, 4, 4)
    keyed[0, 0] = (1, 2, 3)
    for i in range(2):
        Image.fromarray(keyed).save(tmp_path / f"{i}.png", transparency=(1, 2, 3))
    images, _ = everything(dataset_from_path(tmp_path, test_fraction=0.5))
    assert images[0, :, 0, 0].tolist() == [255, 255, 255]
    assert images[0, :, 1:, 1:].tolist() == chw(keyed)[:, 1:, 1:].tolist()


def test_without_torchvision_io_pillow_decodes_the_same_pixels(tmp_path, cache, monkeypatch):
    from zoo import image_decode

    for suffix in (".png", ".webp", ".bmp"):
        folder(tmp_path / "f", 3, size=(12, 10), suffix=suffix, seed=len(suffix) * 10)
    sixteen = np.arange(120, dtype=np.uint16).reshape(12, 10) * 500
    Image.fromarray(sixteen).save(tmp_path / "f" / "sixteen.png")
    with_torchvision = everything(dataset_from_path(tmp_path / "f", test_fraction=0.2))
    monkeypatch.setattr(image_decode, "_TORCHVISION", [None, None])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-2"))
    forget()
    with_pillow = everything(dataset_from_path(tmp_path / "f", test_fraction=0.2))
    assert torch.equal(with_torchvision[0], with_pillow[0])
    grey = np.repeat((sixteen >> 8).astype(np.uint8)[None], 3, axis=0)
    assert any(np.array_equal(image, grey) for image in with_pillow[0].numpy())


def test_class_folders_give_labels(tmp_path, cache):
    root = tmp_path / "animals"
    sources = {}
    for cls, count in (("dog", 3), ("cat", 4), ("emu", 2)):
        for i in range(count):
            sources[f"{cls}{i}"] = write(root / cls / f"{i}.png", pixels(hash((cls, i)) % 1000, 8, 8))
    write(root / "dog" / "puppies" / "deep.png", sources.setdefault("dog-deep", pixels(7777, 8, 8)))
    (root / "notes.txt").write_text("not an image: ignored")
    info = dataset_from_path(root, test_fraction=0.3)
    assert info.classes == ("cat", "dog", "emu") and info.num_classes == 3
    images, labels = everything(info)
    names = names_of(images, sources)
    expected = {"cat": 0, "dog": 1, "emu": 2}
    assert [expected[n[:3]] for n in names] == labels.tolist()
    assert labels.bincount().tolist() == [4, 4, 2]


def test_train_and_test_folders_give_the_split(tmp_path, cache):
    root = tmp_path / "split"
    train = {
        f"train-{c}{i}": write(root / "train" / c / f"{i}.png", pixels(i + 10 * ord(c), 8, 8))
        for c in "ab"
        for i in range(3)
    }
    test = {f"test-b{i}": write(root / "test" / "b" / f"{i}.bmp", pixels(500 + i, 8, 8)) for i in range(2)}  # fmt: skip
    write(root / "test" / "c" / "0.png", test.setdefault("test-c0", pixels(900, 8, 8)))
    info = dataset_from_path(root, test_fraction=0.5)  # the folders decide, not the fraction
    assert info.split_sizes == {"train": 6, "test": 3} and info.classes == ("a", "b", "c")
    (x_train, y_train), (x_test, y_test) = info.load("train"), info.load("test")
    assert sorted(names_of(x_train, train)) == sorted(train)
    assert sorted(names_of(x_test, test)) == sorted(test)
    assert sorted(y_train.tolist()) == [0, 0, 0, 1, 1, 1] and sorted(y_test.tolist()) == [1, 1, 2]


def test_images_beside_train_and_test_are_left_out_with_a_warning(tmp_path, cache, capsys):
    folder(tmp_path / "r" / "train", 3, size=(8, 8))
    folder(tmp_path / "r" / "test", 2, size=(8, 8))
    folder(tmp_path / "r" / "val", 2, size=(8, 8))
    assert dataset_from_path(tmp_path / "r").split_sizes == {"train": 3, "test": 2}
    assert (
        f"warning: left out 2 images outside {tmp_path / 'r'}/train and {tmp_path / 'r'}/test"
        in capsys.readouterr().err
    )


def test_the_split_is_seeded_and_the_same_in_every_call_and_process(tmp_path, cache):
    folder(tmp_path / "d", 30, size=(6, 6))
    first = dataset_from_path(tmp_path / "d", test_fraction=0.2, split_seed=3)
    test_images = first.load("test")[0].clone()
    assert len(test_images) == 6
    forget()
    assert torch.equal(dataset_from_path(tmp_path / "d", test_fraction=0.2, split_seed=3).load("test")[0], test_images)
    other = dataset_from_path(tmp_path / "d", test_fraction=0.2, split_seed=4).load("test")[0]
    assert not torch.equal(other, test_images)
    # Another process, with another cache (so it decodes again), rebuilds the same split from the source.
    script = (
        "import json, sys, hashlib, zoo; info = zoo.dataset_from_path(**json.loads(sys.argv[1])); "
        "print(hashlib.sha256(info.load('test')[0].numpy().tobytes()).hexdigest())"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "other-cache"), "PYTHONPATH": ROOT + os.pathsep + os.path.join(ROOT, "plugins")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, json.dumps(first.source)], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    import hashlib

    assert done.stdout.strip() == hashlib.sha256(test_images.numpy().tobytes()).hexdigest()


def test_the_source_is_plain_json_that_rebuilds_the_data_set(tmp_path, cache, monkeypatch):
    folder(tmp_path / "src" / "x", 4, size=(10, 12))
    folder(tmp_path / "src" / "y", 4, size=(10, 12), seed=50)
    monkeypatch.chdir(tmp_path)
    info = dataset_from_path("src", image_size=8, test_fraction=0.25, split_seed=7, on_bad="stop")
    assert info.source == {
        "path": str(tmp_path / "src"),
        "image_size": [8, 8],
        "test_fraction": 0.25,
        "split_seed": 7,
        "on_bad": "stop",
    }
    assert info.loader == "zoo.user_data:load_split" and info.loader_options == info.source
    assert json.loads(json.dumps(info.source)) == info.source
    again = dataset_from_path(**json.loads(json.dumps(info.source)))
    assert again == info
    forget()  # the loader alone, in a process that has not read the folder yet
    train = load_split(None, "train", False, **info.source)
    assert torch.equal(train[0], info.load("train")[0]) and torch.equal(train[1], info.load("train")[1])


def test_a_second_read_decodes_nothing_and_a_changed_file_is_decoded_again(tmp_path, cache, monkeypatch):
    folder(tmp_path / "c", 10, size=(8, 8))
    calls = {"headers": 0, "decode": 0}
    headers, decode = image_folder.read_headers, image_folder.decode_rows

    def counting_headers(paths):
        calls["headers"] += 1
        return headers(paths)

    def counting_decode(task):
        calls["decode"] += 1
        return decode(task)

    monkeypatch.setattr(image_folder, "read_headers", counting_headers)
    monkeypatch.setattr(image_folder, "decode_rows", counting_decode)
    first = everything(dataset_from_path(tmp_path / "c"))
    assert calls == {"headers": 1, "decode": 1}
    assert len(list((cache / "zoo" / "decoded").glob("*.npy"))) == 2  # the images and their labels
    forget()
    second = everything(dataset_from_path(tmp_path / "c"))
    assert calls == {"headers": 1, "decode": 1}  # not a header opened, not an image decoded
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])

    write(tmp_path / "c" / "img-003.png", pixels(1234, 8, 8))
    os.utime(tmp_path / "c" / "img-003.png", ns=(1, 1))
    forget()
    dataset_from_path(tmp_path / "c")
    assert calls == {"headers": 2, "decode": 2}


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the process's memory map (Linux)")
def test_decoded_images_are_memory_mapped_from_the_cache(tmp_path, cache):
    folder(tmp_path / "mm", 10, size=(8, 8))
    images, _ = dataset_from_path(tmp_path / "mm").load("train")
    entry = next(p for p in (cache / "zoo" / "decoded").glob("*.npy") if not p.name.endswith(".extra.npy"))
    assert np.load(entry, mmap_mode="r").shape == (10, 3, 8, 8)
    mapped = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(entry)):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            mapped.append((start, end))
    assert any(start <= images.data_ptr() < end for start, end in mapped)  # the file's pages, not a copy


def test_worker_processes_decode_as_this_process_does(tmp_path, cache, monkeypatch):
    folder(tmp_path / "w" / "a", 12, size=(9, 7))
    folder(tmp_path / "w" / "b", 12, size=(12, 12), channels=1, seed=40)
    inline = everything(dataset_from_path(tmp_path / "w", test_fraction=0.25))
    monkeypatch.setattr(image_folder, "POOL_MIN_FILES", 2)
    monkeypatch.setattr(image_folder, "CHUNK", 5)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-2"))
    forget()
    pooled = everything(dataset_from_path(tmp_path / "w", test_fraction=0.25))
    assert torch.equal(inline[0], pooled[0]) and torch.equal(inline[1], pooled[1])


def test_links_to_folders_are_followed(tmp_path, cache):
    folder(tmp_path / "elsewhere", 3, size=(8, 8))
    folder(tmp_path / "root" / "mine", 3, size=(8, 8), seed=10)
    (tmp_path / "root" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    info = dataset_from_path(tmp_path / "root", test_fraction=0.2)
    assert info.classes == ("linked", "mine") and sum(info.split_sizes.values()) == 6


# -- arrays --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "to_nchw"),
    [
        ((12, 9, 7), lambda a: a[:, None]),
        ((12, 9, 7, 1), lambda a: a.transpose(0, 3, 1, 2)),
        ((12, 9, 7, 3), lambda a: a.transpose(0, 3, 1, 2)),
        ((12, 1, 9, 7), lambda a: a),
        ((12, 3, 9, 7), lambda a: a),
        ((12, 3, 4, 4), lambda a: a),  # H = W = 4: not channels
    ],
)
def test_npy_layouts(tmp_path, cache, shape, to_nchw):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", array)
    info = dataset_from_path(tmp_path / "x.npy", test_fraction=0.25)
    expected = np.ascontiguousarray(to_nchw(array))
    assert info.id == "files:x.npy" and info.shape == expected.shape[1:] and info.num_classes == 1
    images, labels = everything(info)
    assert info.split_sizes == {"train": 9, "test": 3} and labels.tolist() == [0] * 12
    assert sorted(map(bytes, images.numpy())) == sorted(map(bytes, expected))


def test_npy_is_read_memory_mapped(tmp_path, cache, monkeypatch):
    np.save(tmp_path / "x.npy", np.zeros((10, 4, 4), np.uint8))
    seen = []
    load = np.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("mmap_mode"))
        return load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    dataset_from_path(tmp_path / "x.npy")
    assert seen and seen[0] == "r"


def test_npz_train_and_test_arrays_give_the_split_and_labels(tmp_path, cache):
    rng = np.random.default_rng(1)
    train, test = rng.integers(0, 256, (20, 6, 6, 3), np.uint8), rng.integers(0, 256, (5, 6, 6, 3), np.uint8)
    np.savez(tmp_path / "d.npz", train=train, test=test, train_labels=np.arange(20) % 4, test_labels=[3, 2, 1, 0, 0])
    info = dataset_from_path(tmp_path / "d.npz", test_fraction=0.5)
    assert info.split_sizes == {"train": 20, "test": 5} and info.num_classes == 4
    (x, y), (xt, yt) = info.load("train"), info.load("test")
    assert np.array_equal(x.numpy(), train.transpose(0, 3, 1, 2)) and y.tolist() == (np.arange(20) % 4).tolist()
    assert np.array_equal(xt.numpy(), test.transpose(0, 3, 1, 2)) and yt.tolist() == [3, 2, 1, 0, 0]


def test_npz_with_keras_names_and_with_one_images_array(tmp_path, cache):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "k.npz", x_train=rng.integers(0, 256, (8, 5, 5), np.uint8), y_train=np.arange(8),
             x_test=rng.integers(0, 256, (2, 5, 5), np.uint8), y_test=np.arange(2))  # fmt: skip
    assert dataset_from_path(tmp_path / "k.npz").split_sizes == {"train": 8, "test": 2}
    images = rng.integers(0, 256, (10, 5, 5), np.uint8)
    np.savez(tmp_path / "one.npz", images=images, labels=np.arange(10) % 2)
    info = dataset_from_path(tmp_path / "one.npz", test_fraction=0.3)
    assert info.split_sizes == {"train": 7, "test": 3} and info.num_classes == 2
    got, labels = everything(info)
    by_bytes = {bytes(images[i]): i % 2 for i in range(10)}
    assert [by_bytes[bytes(g[0])] for g in got.numpy()] == labels.tolist()
    np.savez(tmp_path / "unnamed.npz", images)
    assert dataset_from_path(tmp_path / "unnamed.npz", test_fraction=0.3).shape == (1, 5, 5)


def test_arrays_can_be_resized(tmp_path, cache):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 256, (4, 20, 10), dtype=np.uint8))
    assert dataset_from_path(tmp_path / "x.npy", image_size=8, test_fraction=0.25).shape == (1, 8, 8)


def test_the_benchmark_script_reads_a_folder_twice(tmp_path, cache, monkeypatch, capsys):
    """bench/user_images.py (the figures of docs/data.md), on a few files."""
    import runpy

    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))  # the script points it at its own folder
    monkeypatch.setattr(sys, "argv", ["user_images.py", "--count", "30", "--size", "4", "--classes", "3"])
    monkeypatch.syspath_prepend(os.path.join(ROOT, "bench"))
    runpy.run_path(os.path.join(ROOT, "bench", "user_images.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "files:images: 30 images (1, 4, 4), splits {'train': 27, 'test': 3}" in out
    for line in ("first read (decode)", "second read (cached)", "load train and sum"):
        assert line in out
