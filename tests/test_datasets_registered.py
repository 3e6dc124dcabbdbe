"""Every registered data set, read from small synthetic files written in its exact on-disk format:
the images and labels that come back, the splits, the files' layout, and the one-line errors for
missing, damaged and foreign files. Frey Face also on the real file (MNIST's real files are in
tests/test_data.py).

The registered data sets check the real split sizes; the tests load tiny files through a copy of
each :class:`zoo.DatasetInfo` whose ``split_sizes`` are the tiny files' (:func:`sized`), and check
separately that the registered one refuses them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from helpers_dataset_files import (
    CELEBA_PARTITIONS,
    TEST,
    TRAIN,
    WRITERS,
    celeba_reference,
    frey_faces,
    truncated,
    write_celeba,
    write_chardata,
    write_cifar,
    write_frey_mat,
    write_idx,
    write_idx_set,
    write_svhn,
)
from PIL import Image
from test_data import offline, snapshot  # noqa: F401 - a fixture, used by name

from zoo import plugins
from zoo.data import BUILTIN_DATASETS, DatasetInfo
from zoo.errors import ZooError

DATASETS = {info.id: info for info in BUILTIN_DATASETS}

#: id -> (shape, train, test, binarized, num_classes): what each data set is, in its real files.
EXPECTED = {
    "mnist": ((1, 28, 28), 60000, 10000, False, 10),
    "binarized-mnist": ((1, 28, 28), 60000, 10000, True, 10),
    "fashion-mnist": ((1, 28, 28), 60000, 10000, False, 10),
    "kmnist": ((1, 28, 28), 60000, 10000, False, 10),
    "cifar10": ((3, 32, 32), 50000, 10000, False, 10),
    "svhn": ((3, 32, 32), 73257, 26032, False, 10),
    "celeba64": ((3, 64, 64), 162770, 19962, False, 1),
    "omniglot": ((1, 28, 28), 24345, 8070, False, 50),
    "binarized-omniglot": ((1, 28, 28), 24345, 8070, True, 50),
    "frey-faces": ((1, 28, 20), 1765, 200, False, 1),
    "dsprites": ((1, 64, 64), 737280, 10000, False, 3),
    "dsprites-colour": ((3, 64, 64), 737280, 10000, False, 3),
}
#: Generated rather than read from files (tests/test_dsprites.py tests them), so they have no writer.
GENERATED = {"dsprites", "dsprites-colour"}


def sized(info: DatasetInfo, train: int = TRAIN, test: int = TEST, **options) -> DatasetInfo:
    """``info`` expecting the synthetic files' split sizes (Frey Face keeps its own)."""
    if info.id == "frey-faces":
        return dataclasses.replace(info, loader_options={**info.loader_options, **options})
    return dataclasses.replace(
        info, split_sizes={"train": train, "test": test}, loader_options={**info.loader_options, **options}
    )


def one_line_error(call, *needles: str) -> str:
    """``call()`` raises a one-line ZooError containing every needle; returns its message."""
    with pytest.raises(ZooError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not in {message!r}"
    return message


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test its own cache of extracted and decoded files."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# -- torchvision's checksums -----------------------------------------------------------------


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def accept_synthetic(monkeypatch):
    """torchvision checks CIFAR-10's and SVHN's files against the published MD5s: give it those of
    the synthetic files (``accept(root)`` after writing them), so that its check still runs."""
    from torchvision.datasets import CIFAR10, SVHN

    def accept(root: Path) -> None:
        base = root / "cifar-10-batches-py"
        if base.is_dir():
            monkeypatch.setattr(CIFAR10, "train_list", [[n, md5(base / n)] for n, _ in CIFAR10.train_list])
            monkeypatch.setattr(CIFAR10, "test_list", [[n, md5(base / n)] for n, _ in CIFAR10.test_list])
            monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(base / "batches.meta")})
        svhn = root / "SVHN"
        if svhn.is_dir():
            table = {s: [url, name, md5(svhn / name)] for s, (url, name, _) in SVHN.split_list.items() if s != "extra"}
            monkeypatch.setattr(SVHN, "split_list", {**SVHN.split_list, **table})

    return accept


# -- what is registered ------------------------------------------------------------------------


def test_every_data_set_is_registered_with_its_shape_and_split_sizes():
    registry = plugins.get_registry()
    assert set(registry.ids("dataset")) == set(EXPECTED) == set(WRITERS) | GENERATED
    for dataset_id, (shape, train, test, binarized, classes) in EXPECTED.items():
        info = registry.get("dataset", dataset_id).load()
        assert registry.get("dataset", dataset_id).plugin == "zoo.data"
        assert (info.shape, info.split_sizes, info.binarized, info.num_classes) == (
            shape,
            {"train": train, "test": test},
            binarized,
            classes,
        ), dataset_id


def test_zoo_list_shows_every_data_set():
    from click.testing import CliRunner

    from zoo.cli import cli

    result = CliRunner().invoke(cli, ["list", "--kind", "dataset"])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    assert listed == sorted(EXPECTED)


# -- the synthetic files read back -------------------------------------------------------------


@pytest.mark.parametrize("dataset_id", sorted(WRITERS))
def test_synthetic_files_read_back_exactly(dataset_id, tmp_path, accept_synthetic):
    root = tmp_path / "data"
    expected = WRITERS[dataset_id](root)
    accept_synthetic(root)
    info = sized(DATASETS[dataset_id])
    for split in ("train", "test"):
        images, labels = info.load(split, root, download=False)
        want_images, want_labels = expected[split]
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert tuple(images.shape) == (len(want_images), *info.shape)
        assert np.array_equal(images.numpy(), want_images), f"{dataset_id} {split}: pixels differ"
        assert np.array_equal(labels.numpy(), want_labels), f"{dataset_id} {split}: labels differ"


@pytest.mark.parametrize("dataset_id", sorted(set(WRITERS) - {"frey-faces"}))
def test_the_registered_sizes_are_enforced(dataset_id, tmp_path, accept_synthetic):
    root = tmp_path / "data"
    WRITERS[dataset_id](root)
    accept_synthetic(root)
    _, train, *_ = EXPECTED[dataset_id]
    count = CELEBA_PARTITIONS.count(0) if dataset_id == "celeba64" else TRAIN
    one_line_error(
        lambda: DATASETS[dataset_id].load("train", root, download=False), f"found {count} images, expected {train}"
    )


# -- missing files, offline ----------------------------------------------------------------------

#: id -> what the error must name: the files, and the folder under the root.
MISSING = {
    "mnist": (["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"], "MNIST/raw"),
    "kmnist": (["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"], "KMNIST/raw"),
    "cifar10": (
        ["data_batch_1", "data_batch_5", "test_batch", "batches.meta", "cifar-10-python.tar.gz"],
        "cifar-10-batches-py",
    ),
    "svhn": (["train_32x32.mat"], "SVHN"),
    "celeba64": (["list_eval_partition.txt", "img_align_celeba", "img_align_celeba.zip"], "celeba"),
    "omniglot": (["chardata.mat", "yburda/iwae"], "Omniglot"),
    "binarized-omniglot": (["chardata.mat"], "Omniglot"),
    "frey-faces": (["frey_rawface.mat", "frey-faces-idx3-ubyte.gz"], "FreyFaces"),
}


@pytest.mark.parametrize("dataset_id", sorted(MISSING))
def test_offline_the_error_names_the_files_and_the_folder(dataset_id, tmp_path, offline):
    import socket

    default = socket.getdefaulttimeout()
    names, folder = MISSING[dataset_id]
    root = tmp_path / "empty"
    one_line_error(
        lambda: DATASETS[dataset_id].load("train", root, download=True),
        "files not found",
        *names,
        str(root / folder),
        "--data-dir",
    )
    assert all(t is not None and 0 < t <= 60 for t in offline), "a download waited without a timeout"
    assert socket.getdefaulttimeout() == default


def test_without_download_nothing_is_fetched(tmp_path, offline):
    for dataset_id in MISSING:
        with pytest.raises(ZooError, match="files not found"):
            DATASETS[dataset_id].load("test", tmp_path / "empty", download=False)
    assert offline == [] and not (tmp_path / "empty").exists()


# -- CIFAR-10 and SVHN ---------------------------------------------------------------------------


def test_cifar10_damaged_batch_is_named(tmp_path, accept_synthetic):
    root = tmp_path / "data"
    write_cifar(root)
    accept_synthetic(root)
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-100])  # cut short
    for split in ("train", "test"):  # torchvision checks every batch whichever split is read
        one_line_error(
            lambda split=split: sized(DATASETS["cifar10"]).load(split, root, download=False),
            str(batch),
            "damaged",
            "download it again",
        )


def test_svhn_damaged_file_is_named(tmp_path, accept_synthetic):
    root = tmp_path / "data"
    write_svhn(root)
    accept_synthetic(root)
    path = root / "SVHN" / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:500])
    one_line_error(lambda: sized(DATASETS["svhn"]).load("test", root, download=False), str(path), "damaged")
    images, _ = sized(DATASETS["svhn"]).load("train", root, download=False)  # the other split is intact
    assert images.shape == (TRAIN, 3, 32, 32)


def test_svhn_file_of_another_layout_is_a_one_line_error(tmp_path, accept_synthetic):
    """A .mat that passes the checksum (here: the synthetic one's) but lacks SVHN's arrays."""
    root = tmp_path / "data"
    write_svhn(root)
    scipy.io.savemat(root / "SVHN" / "train_32x32.mat", {"images": np.zeros((4, 4))})
    accept_synthetic(root)
    one_line_error(lambda: sized(DATASETS["svhn"]).load("train", root, download=False), "cannot read SVHN", "replace")


# -- CelebA --------------------------------------------------------------------------------------


def test_celeba_splits_follow_the_partition_file(tmp_path):
    root = tmp_path / "data"
    write_celeba(root)
    train, _ = sized(DATASETS["celeba64"], 10, 3).load("train", root, download=False)
    test, _ = sized(DATASETS["celeba64"], 10, 3).load("test", root, download=False)
    assert len(train) == CELEBA_PARTITIONS.count(0) and len(test) == CELEBA_PARTITIONS.count(2)
    # The validation images (partition 1) are in neither split.
    folder = root / "celeba" / "img_align_celeba"
    validation = [celeba_reference(folder / f"{i + 1:06d}.jpg") for i, p in enumerate(CELEBA_PARTITIONS) if p == 1]
    everything = torch.cat([train, test]).numpy()
    assert not any((everything == v).all(axis=(1, 2, 3)).any() for v in validation)


def test_celeba_is_decoded_once_by_worker_processes_and_then_read_from_the_cache(tmp_path, monkeypatch):
    from zoo import celeba

    root = tmp_path / "data"
    expected = write_celeba(root)
    info = sized(DATASETS["celeba64"], 10, 3, workers=2)
    before = snapshot(root)
    first, _ = info.load("train", root, download=False)
    assert np.array_equal(first.numpy(), expected["train"][0])
    entries = sorted((tmp_path / "cache" / "zoo" / "decoded").glob("*.npy"))
    assert len(entries) == 1 and entries[0].stat().st_size > first.numel()

    def no_decoding(path):
        raise AssertionError("decoded again")

    monkeypatch.setattr(celeba, "_decode", no_decoding)
    again, _ = info.load("train", root, download=False)
    assert torch.equal(again, first)
    assert snapshot(root) == before, "the data folder was written to"


def test_a_replaced_celeba_image_is_decoded_again(tmp_path):
    root = tmp_path / "data"
    write_celeba(root)
    info = sized(DATASETS["celeba64"], 10, 3)
    first, _ = info.load("train", root, download=False)
    path = root / "celeba" / "img_align_celeba" / "000001.jpg"
    Image.new("RGB", (178, 218), (200, 10, 10)).save(path)
    again, _ = info.load("train", root, download=False)
    assert np.array_equal(again[0].numpy(), celeba_reference(path)) and not torch.equal(again[0], first[0])
    assert torch.equal(again[1:], first[1:])


@pytest.mark.parametrize(
    "damage,needles",
    [
        ("truncated", ["000004.jpg", "cannot be read as a CelebA image"]),
        ("not a jpeg", ["000004.jpg", "not a JPEG"]),
        ("wrong size", ["000004.jpg", "200x200", "178x218"]),
        ("missing", ["1 of the 10 train images", "000004.jpg", "are missing from"]),
        ("bad line", ["list_eval_partition.txt line 3", "'NAME.jpg PARTITION'"]),
        ("path in a name", ["list_eval_partition.txt line 1", "replace the file"]),
        ("binary partition file", ["not plain text"]),
    ],
)
def test_damaged_celeba_files_are_one_line_errors(damage, needles, tmp_path):
    root = tmp_path / "data"
    write_celeba(root)
    image = root / "celeba" / "img_align_celeba" / "000004.jpg"
    partition = root / "celeba" / "list_eval_partition.txt"
    if damage == "truncated":
        image.write_bytes(image.read_bytes()[:2000])
    elif damage == "not a jpeg":
        Image.new("RGB", (178, 218)).save(image, format="PNG")
    elif damage == "wrong size":
        Image.new("RGB", (200, 200)).save(image, format="JPEG")
    elif damage == "missing":
        image.unlink()
    elif damage == "bad line":
        lines = partition.read_text().splitlines()
        partition.write_text("\n".join([*lines[:2], "000003.jpg 7", *lines[3:]]))
    elif damage == "path in a name":
        partition.write_text("../000001.jpg 0\n" + partition.read_text())
    else:
        partition.write_bytes(bytes(range(256)))
    before = snapshot(root)
    one_line_error(lambda: sized(DATASETS["celeba64"], 10, 3).load("train", root, download=False), *needles)
    assert snapshot(root) == before
    assert not list((tmp_path / "cache").rglob("*.npy")), "a failed decode left a cache entry"


# -- Omniglot ------------------------------------------------------------------------------------


def test_omniglot_pixels_are_read_in_the_iwae_codes_order(tmp_path):
    """Burda et al.'s code turns each column into a row-major 784-vector with
    ``data.T.reshape((-1, 28, 28)).reshape((-1, 784), order="F")``; the images here are those vectors."""
    root = tmp_path / "data"
    write_chardata(root)
    data = scipy.io.loadmat(root / "Omniglot" / "chardata.mat")["data"]
    iwae_vectors = data.T.reshape((-1, 28, 28)).reshape((-1, 784), order="F")
    images, _ = sized(DATASETS["omniglot"]).load("train", root, download=False)
    assert np.array_equal(images.numpy().reshape(-1, 784), np.rint(iwae_vectors * 255).astype(np.uint8))
    assert (images[:, 0, 2:5, 3:20] == 255).all(), "the bar drawn across the top is not at the top"


def test_binarized_omniglot_reads_the_grey_levels(tmp_path):
    root = tmp_path / "data"
    write_chardata(root)
    grey, labels = sized(DATASETS["omniglot"]).load("test", root, download=False)
    binarized, same_labels = sized(DATASETS["binarized-omniglot"]).load("test", root, download=False)
    assert torch.equal(grey, binarized) and torch.equal(labels, same_labels)
    assert DATASETS["binarized-omniglot"].binarized and not DATASETS["omniglot"].binarized


@pytest.mark.parametrize(
    "changes,needles",
    [
        ({"testdata": None}, ["holds no 2-d numeric array 'testdata'"]),
        ({"testdata": np.zeros((100, TEST))}, ["'testdata' is 100 x 3, expected 784 x N"]),
        ({"testdata": np.full((784, TEST), 3.0)}, ["outside 0..1"]),
        ({"testtarget": np.zeros((50, TEST + 1))}, ["'testtarget' labels 4 images but 'testdata' holds 3"]),
    ],
    ids=["no test images", "wrong size", "not grey levels", "labels disagree"],
)
def test_foreign_chardata_is_a_one_line_error(changes, needles, tmp_path):
    root = tmp_path / "data"
    write_chardata(root, **changes)
    path = root / "Omniglot" / "chardata.mat"
    one_line_error(lambda: sized(DATASETS["omniglot"]).load("test", root, download=False), str(path), *needles)


def test_truncated_chardata_is_a_one_line_error(tmp_path):
    root = tmp_path / "data"
    write_chardata(root)
    path = root / "Omniglot" / "chardata.mat"
    path.write_bytes(path.read_bytes()[:3000])
    one_line_error(
        lambda: sized(DATASETS["omniglot"]).load("train", root, download=False),
        str(path),
        "not a readable MATLAB file",
        "download chardata.mat",
    )


# -- Frey Face -----------------------------------------------------------------------------------


def test_frey_split_is_fixed_disjoint_and_complete():
    from zoo.datasets_papers import frey_split

    train, test = frey_split("train"), frey_split("test")
    assert (len(train), len(test)) == (1765, 200)
    assert sorted([*train, *test]) == list(range(1965))
    assert list(test[:8]) == [6, 9, 17, 18, 27, 30, 37, 47]  # numpy's RandomState(0) stream never changes


def test_frey_idx_and_mat_give_the_same_images(tmp_path):
    faces = frey_faces(seed=5)
    from_mat, from_idx = tmp_path / "mat", tmp_path / "idx"
    write_frey_mat(from_mat, faces)
    write_idx(from_idx / "FreyFaces" / "frey-faces-idx3-ubyte.gz", faces)
    info = DATASETS["frey-faces"]
    for split in ("train", "test"):
        a, labels = info.load(split, from_mat, download=False)
        b, _ = info.load(split, from_idx, download=False)
        assert torch.equal(a, b) and a.shape[1:] == (1, 28, 20)
        assert labels.unique().tolist() == [0]


@pytest.mark.parametrize(
    "write,needles",
    [
        (lambda d: scipy.io.savemat(d / "frey_rawface.mat", {"ff": np.zeros((20, 28), np.uint8)}), ["560 x 1965"]),
        (
            lambda d: scipy.io.savemat(d / "frey_rawface.mat", {"faces": np.zeros((560, 1965))}),
            ["no 2-d numeric array 'ff'"],
        ),
        (lambda d: scipy.io.savemat(d / "frey_rawface.mat", {"ff": np.full((560, 1965), 300.0)}), ["outside 0..255"]),
        (
            lambda d: (d / "frey_rawface.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200)),
            ["not a readable MATLAB"],
        ),
        (lambda d: truncated(write_frey_mat(d.parent) and d / "frey_rawface.mat"), ["not a readable MATLAB"]),
        (
            lambda d: write_idx(d / "frey-faces-idx3-ubyte.gz", np.zeros((100, 28, 20))),
            ["expected 1965 faces of 28x20"],
        ),
        (lambda d: (d / "frey-faces-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + bytes(50)), ["not a readable gzip file"]),
    ],
    ids=[
        "ff of another shape",
        "no ff",
        "not bytes",
        "damaged mat",
        "truncated mat",
        "idx of 100 faces",
        "damaged idx",
    ],
)
def test_foreign_frey_files_are_one_line_errors(write, needles, tmp_path):
    folder = tmp_path / "data" / "FreyFaces"
    folder.mkdir(parents=True)
    write(folder)
    one_line_error(lambda: DATASETS["frey-faces"].load("train", tmp_path / "data", download=False), *needles)


#: sha256 of the uncompressed IDX file of Frey Face that the test data holds.
FREY_SHA256 = "c943677a3bcb83ed2de1207d4355c360cabfee597a538f9735ec3254886c365f"


@pytest.fixture
def frey_root(data_root) -> Path:
    if not (data_root / "FreyFaces" / "frey-faces-idx3-ubyte.gz").is_file():
        pytest.skip("Frey Face file not found: put FreyFaces/frey-faces-idx3-ubyte.gz in $ZOO_TEST_DATA")
    return data_root


def test_frey_faces_real_file(frey_root, tmp_path):
    """The real file: its split sizes, its pixel range, and the same faces from a .mat written from it."""
    from zoo.idx import read_idx

    info = DATASETS["frey-faces"]
    train, _ = info.load("train", frey_root, download=False)
    test, _ = info.load("test", frey_root, download=False)
    assert train.shape == (1765, 1, 28, 20) and test.shape == (200, 1, 28, 20)
    everything = torch.cat([train, test])
    assert (int(everything.min()), int(everything.max())) == (8, 238)
    path = frey_root / "FreyFaces" / "frey-faces-idx3-ubyte.gz"
    assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == FREY_SHA256
    faces = read_idx(path, 3).numpy()
    write_frey_mat(tmp_path / "mat", faces)
    from_mat, _ = info.load("train", tmp_path / "mat", download=False)
    assert torch.equal(from_mat, train)


# -- KMNIST --------------------------------------------------------------------------------------


def test_kmnist_damaged_file_is_named(tmp_path):
    root = tmp_path / "data"
    write_idx_set("KMNIST")(root)
    path = root / "KMNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    one_line_error(lambda: sized(DATASETS["kmnist"]).load("test", root, download=False), str(path), "gzip")


# -- a plugin's own data set in MNIST's format -----------------------------------------------------


def test_idx_data_set_without_a_torchvision_class_is_never_downloaded(tmp_path, offline):
    """``zoo.idx:load_idx`` without ``torchvision_class`` (docs/data.md's example): files must be there."""
    mine = DatasetInfo("my-digits", "", (1, 28, 28), "zoo.idx:load_idx", {"folder": "MyDigits"}, {"train": TRAIN})
    message = one_line_error(
        lambda: mine.load("train", tmp_path / "data", download=True),
        "MyDigits files not found",
        "train-images-idx3-ubyte.gz",
        str(tmp_path / "data" / "MyDigits" / "raw"),
    )
    assert "network" not in message and offline == []
    expected = write_idx_set("MyDigits")(tmp_path / "data")
    images, labels = mine.load("train", tmp_path / "data", download=True)
    assert np.array_equal(images.numpy(), expected["train"][0]) and np.array_equal(labels.numpy(), expected["train"][1])


def test_the_readers_former_names_still_answer():
    """Plugins name ``"zoo.data:load_idx"``, as zoo's own data sets did before the reader had its module."""
    import zoo.data
    import zoo.downloads
    import zoo.idx

    assert zoo.data.load_idx is zoo.idx.load_idx and zoo.data.MAX_IDX_BYTES == zoo.idx.MAX_IDX_BYTES
    assert zoo.data.DOWNLOAD_TIMEOUT == zoo.downloads.DOWNLOAD_TIMEOUT == 30.0
    old = DatasetInfo("old", "", (1, 28, 28), "zoo.data:load_idx", {"folder": "Old"})
    with pytest.raises(ZooError, match="Old files not found"):
        old.load("test", "nowhere", download=False)


def test_celeba_decode_benchmark_runs(tmp_path):
    """bench/celeba_decode.py, whose figures docs/data.md shows, on a few images (timings are not tested)."""
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "celeba_decode.py"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(script), "--images", "12", "--workers", "1", "2", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if re.match(r"\| \d", line)]
    assert [row[0].strip() for row in rows] == ["1", "2"], proc.stdout
    assert all(float(row[1].split()[0]) > 0 and row[3].strip().endswith(" ms") for row in rows), proc.stdout
    bad = subprocess.run([sys.executable, str(script), "--workers", "0"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "at least 1" in bad.stderr


def test_processes_loading_celeba_at_once_wait_for_the_first_to_decode(tmp_path, monkeypatch):
    """A torchrun job's processes load the same split together: a second one waits on the lock the
    first holds, then reads the cache instead of decoding again."""
    import fcntl
    import threading

    from zoo.celeba import decoding_lock

    root = tmp_path / "data"
    write_celeba(root)
    info = sized(DATASETS["celeba64"], 10, 3)
    first, _ = info.load("train", root, download=False)
    locks = list((tmp_path / "cache" / "zoo" / "decoded").glob(".*.lock"))
    assert len(locks) == 1
    results = []
    with open(locks[0], "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process decoding
        waiting = threading.Thread(target=lambda: results.append(info.load("train", root, download=False)[0]))
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive() and not results, "the load did not wait for the lock"
    waiting.join(timeout=60)
    assert len(results) == 1 and torch.equal(results[0], first)
    monkeypatch.setenv("XDG_CACHE_HOME", "/dev/null/cache")  # nowhere to keep a lock: no lock, no error
    with decoding_lock({"split": "train"}):
        results.append("ran")
    assert results[-1] == "ran"
