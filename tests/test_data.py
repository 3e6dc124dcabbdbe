"""Data sets: where the files are looked for, reading the real files, bad files, binarization."""

from __future__ import annotations

import gzip
import socket
import time
from pathlib import Path

import pytest
import torch

from zoo import plugins
from zoo.batches import DeviceData
from zoo.data import BUILTIN_DATASETS, cache_dir, resolve_data_dir
from zoo.distributed import Dist
from zoo.errors import ZooError

DATASETS = {info.id: info for info in BUILTIN_DATASETS}
MNIST, FASHION, BINARIZED = DATASETS["mnist"], DATASETS["fashion-mnist"], DATASETS["binarized-mnist"]

MNIST_TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def fake_root(tmp_path: Path, files: dict[str, bytes], folder: str = "MNIST") -> Path:
    """A data root holding ``files`` (name -> content) in ``<root>/<folder>/raw``."""
    raw = tmp_path / "data" / folder / "raw"
    raw.mkdir(parents=True)
    for name, content in files.items():
        (raw / name).write_bytes(content)
    return tmp_path / "data"


def real(data_root: Path, name: str, folder: str = "MNIST") -> bytes:
    return (data_root / folder / "raw" / name).read_bytes()


@pytest.fixture
def offline(monkeypatch):
    """No network: every host name lookup fails at once, as on a machine without one.

    Records the socket timeout in force when a download tries to connect.
    """
    timeouts: list[float | None] = []

    def no_network(*args, **kwargs):
        timeouts.append(socket.getdefaulttimeout())
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    return timeouts


# -- where the files are looked for -----------------------------------------------------------


def test_data_dir_argument_wins_over_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_environment_wins_over_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"


def test_cache_is_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg" / "zoo" / "data"
    monkeypatch.setenv("ZOO_DATA", "")  # empty counts as unset
    assert resolve_data_dir() == tmp_path / "xdg" / "zoo" / "data"


def test_cache_falls_back_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("ZOO_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir() == tmp_path / ".cache" / "zoo" / "data"


def test_user_folder_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_data_dir("~/mnist") == tmp_path / "mnist"
    monkeypatch.setenv("ZOO_DATA", "~/env")
    assert resolve_data_dir() == tmp_path / "env"


def test_registered_dataset_reads_from_the_resolved_root(monkeypatch, tmp_path):
    """The loader is handed the resolved root: --data-dir, else ZOO_DATA, else the cache."""
    from zoo.data import DatasetInfo

    seen: list[Path] = []

    def loader(root, split, download):
        seen.append(root)
        return torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64)

    info = DatasetInfo("probe", "", (1, 2, 2), loader)
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "env"))
    info.load("train", tmp_path / "arg")
    info.load("train")
    monkeypatch.delenv("ZOO_DATA")
    info.load("train")
    assert seen == [tmp_path / "arg", tmp_path / "env", cache_dir() / "data"]


def test_builtin_datasets_are_registered():
    registry = plugins.get_registry()
    assert {"mnist", "fashion-mnist", "binarized-mnist"} <= set(registry.ids("dataset"))
    assert registry.get("dataset", "mnist").plugin == "zoo.data"
    assert registry.get("dataset", "binarized-mnist").load().binarized
    assert not registry.get("dataset", "mnist").load().binarized


def test_unknown_split(data_root):
    with pytest.raises(ZooError, match="unknown split 'valid'"):
        MNIST.load("valid", data_root)


# -- the real files ---------------------------------------------------------------------------


@pytest.mark.parametrize("info", [MNIST, FASHION], ids=["mnist", "fashion-mnist"])
@pytest.mark.parametrize("split,count", [("train", 60000), ("test", 10000)])
def test_real_files(info, split, count, data_root):
    images, labels = info.load(split, data_root, download=False)
    assert images.shape == (count, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (count,) and labels.dtype == torch.int64
    assert int(labels.min()) == 0 and int(labels.max()) == 9
    counts = torch.bincount(labels, minlength=10).tolist()
    if info is MNIST:
        assert counts == (MNIST_TRAIN_LABEL_COUNTS if split == "train" else MNIST_TEST_LABEL_COUNTS)
    else:
        assert counts == [count // 10] * 10  # Fashion-MNIST is balanced
    if split == "train":
        mean = images.float().mean().item() / 255
        assert mean == pytest.approx(0.1307 if info is MNIST else 0.2860, abs=5e-4)


def test_binarized_mnist_reads_the_grey_levels(data_root):
    """Binarization happens when an image is used, not when it is read."""
    grey, grey_labels = MNIST.load("test", data_root, download=False)
    images, labels = BINARIZED.load("test", data_root, download=False)
    assert torch.equal(images, grey) and torch.equal(labels, grey_labels)


def test_read_only_root_is_left_alone(data_root):
    """The shared data folder is read-only; files are decompressed into the cache, never beside them."""
    before = snapshot(data_root)
    MNIST.load("test", data_root, download=False)
    FASHION.load("test", data_root, download=False)
    assert snapshot(data_root) == before
    extracted = {p.name for p in (cache_dir() / "extracted").rglob("*") if p.is_file()}
    assert {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"} <= extracted


def test_read_only_copy_works(data_root, tmp_path):
    root = fake_root(tmp_path, {name: real(data_root, name) for name in TEST_FILES})
    folders = [root, root / "MNIST", root / "MNIST" / "raw"]
    for path in (root / "MNIST" / "raw").iterdir():
        path.chmod(0o444)
    for folder in folders:
        folder.chmod(0o555)
    try:
        before = snapshot(root)  # running as root ignores the mode bits: compare the listing too
        images, _ = MNIST.load("test", root, download=True)  # nothing missing, so no download either
        assert images.shape == (10000, 1, 28, 28)
        assert snapshot(root) == before
    finally:
        for folder in folders:
            folder.chmod(0o755)


def test_extracted_copy_is_reused(data_root):
    MNIST.load("test", data_root, download=False)
    extracted = sorted((cache_dir() / "extracted").rglob("t10k-images-idx3-ubyte"))
    stamps = [p.stat().st_mtime_ns for p in extracted]
    MNIST.load("test", data_root, download=False)
    assert [p.stat().st_mtime_ns for p in extracted] == stamps


def test_uncompressed_files_are_read_in_place(data_root, tmp_path):
    files = {name[:-3]: gzip.decompress(real(data_root, name)) for name in TEST_FILES}
    root = fake_root(tmp_path, files)
    images, labels = MNIST.load("test", root, download=False)
    reference, reference_labels = MNIST.load("test", data_root, download=False)
    assert torch.equal(images, reference) and torch.equal(labels, reference_labels)


# -- missing files ----------------------------------------------------------------------------


def test_missing_files_name_the_files_and_the_folder(tmp_path):
    root = tmp_path / "nothing-here"
    with pytest.raises(ZooError) as caught:
        MNIST.load("train", root, download=False)
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert str(root / "MNIST" / "raw") in message
    assert "--data-dir" in message and "ZOO_DATA" in message


def test_one_missing_file_is_named_alone(data_root, tmp_path):
    root = fake_root(tmp_path, {TEST_FILES[0]: real(data_root, TEST_FILES[0])}, folder="FashionMNIST")
    with pytest.raises(ZooError) as caught:
        FASHION.load("test", root, download=False)
    message = str(caught.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and "t10k-images" not in message
    assert str(root / "FashionMNIST" / "raw") in message


def test_offline_download_fails_fast_and_clearly(tmp_path, offline):
    root = tmp_path / "empty"
    start = time.perf_counter()
    with pytest.raises(ZooError) as caught:
        MNIST.load("test", root, download=True)
    assert time.perf_counter() - start < 20
    assert offline, "torchvision did not try to download"
    message = str(caught.value)
    assert "t10k-images-idx3-ubyte.gz" in message and str(root / "MNIST" / "raw") in message


def test_download_does_not_wait_forever(tmp_path, offline):
    """torchvision's urlopen has no timeout of its own; the download sets one, then restores the default."""
    default = socket.getdefaulttimeout()
    with pytest.raises(ZooError):
        FASHION.load("train", tmp_path, download=True)
    assert offline and all(t is not None and 0 < t <= 60 for t in offline)
    assert socket.getdefaulttimeout() == default


def test_read_only_root_without_files_is_a_clear_error(tmp_path, offline):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(ZooError, match="files not found"):
            MNIST.load("test", root, download=True)
    finally:
        root.chmod(0o755)


def test_cli_missing_data_is_a_one_line_error(tmp_path, offline, capsys):
    from zoo.cli import main

    root = tmp_path / "empty"
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "train",
                "vae-conv-mnist",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--no-progress",
                "--data-dir",
                str(root),
                "--out",
                str(tmp_path / "run"),
            ]
        )
    assert exited.value.code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "train-images-idx3-ubyte.gz" in errors[0] and str(root / "MNIST" / "raw") in errors[0]
    assert "Traceback" not in err


# -- damaged and foreign files ----------------------------------------------------------------


def test_truncated_gzip(data_root, tmp_path):
    images = real(data_root, TEST_FILES[0])
    root = fake_root(
        tmp_path, {TEST_FILES[0]: images[: len(images) // 2], TEST_FILES[1]: real(data_root, TEST_FILES[1])}
    )
    with pytest.raises(ZooError, match="not a readable gzip file") as caught:
        MNIST.load("test", root, download=False)
    assert TEST_FILES[0] in str(caught.value)
    leftovers = [p for p in (cache_dir() / "extracted").rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_random_bytes_in_place_of_a_gzip(data_root, tmp_path):
    junk = torch.randint(0, 256, (5000,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    root = fake_root(tmp_path, {TEST_FILES[0]: bytes(junk.tolist()), TEST_FILES[1]: real(data_root, TEST_FILES[1])})
    with pytest.raises(ZooError, match="not a readable gzip file"):
        MNIST.load("test", root, download=False)


def test_random_bytes_inside_a_valid_gzip(data_root, tmp_path):
    junk = torch.randint(0, 256, (5000,), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    root = fake_root(
        tmp_path, {TEST_FILES[0]: gzip.compress(bytes(junk.tolist())), TEST_FILES[1]: real(data_root, TEST_FILES[1])}
    )
    with pytest.raises(ZooError, match="not a valid IDX file") as caught:
        MNIST.load("test", root, download=False)
    assert TEST_FILES[0] in str(caught.value)


def test_truncated_uncompressed_file(data_root, tmp_path):
    images = gzip.decompress(real(data_root, TEST_FILES[0]))
    root = fake_root(tmp_path, {TEST_FILES[0][:-3]: images[:100_000], TEST_FILES[1]: real(data_root, TEST_FILES[1])})
    with pytest.raises(ZooError, match="not a valid IDX file"):
        MNIST.load("test", root, download=False)


def test_labels_file_in_place_of_images(data_root, tmp_path):
    labels = real(data_root, TEST_FILES[1])
    root = fake_root(tmp_path, {TEST_FILES[0]: labels, TEST_FILES[1]: labels})
    with pytest.raises(ZooError, match="1-d array, expected 3-d") as caught:
        MNIST.load("test", root, download=False)
    assert TEST_FILES[0] in str(caught.value)


def test_wrong_image_count(data_root, tmp_path):
    """The test files put where the training files belong: well-formed, but 10000 images, not 60000."""
    root = fake_root(tmp_path, {train: real(data_root, test) for train, test in zip(TRAIN_FILES, TEST_FILES)})
    with pytest.raises(ZooError, match="found 10000 images, expected 60000"):
        MNIST.load("train", root, download=False)


def test_images_and_labels_disagree(data_root, tmp_path):
    root = fake_root(
        tmp_path, {TEST_FILES[0]: real(data_root, TEST_FILES[0]), TEST_FILES[1]: real(data_root, TRAIN_FILES[1])}
    )
    with pytest.raises(ZooError, match="10000 images but .* 60000 labels"):
        MNIST.load("test", root, download=False)


def test_loader_returning_the_wrong_shape():
    from zoo.data import DatasetInfo

    def loader(root, split, download):
        return torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)

    with pytest.raises(ZooError, match="expected \\[N, 1, 28, 28\\]"):
        DatasetInfo("wrong", "", (1, 28, 28), loader).load("train")


# -- dynamic binarization ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def grey_images():
    """3000 real MNIST test images (uint8), or random grey levels without the data."""
    from conftest import DATA_ROOT

    if DATA_ROOT is None:
        return torch.randint(0, 256, (3000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return MNIST.load("test", DATA_ROOT, download=False)[0][:3000]


def epoch_of(data: DeviceData, seed: int, epoch: int, batch_size: int = 500) -> torch.Tensor:
    return torch.cat(list(data.train_batches(batch_size, seed, epoch)))


def test_binarized_batches_are_zeros_and_ones_with_the_grey_mean(grey_images):
    data = DeviceData(grey_images, torch.device("cpu"), binarized=True, dist=Dist())
    x = epoch_of(data, seed=0, epoch=1)
    assert x.dtype == torch.float32 and x.shape == (3000, 1, 28, 28)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    grey_mean = grey_images.float().mean().item() / 255
    assert x.mean().item() == pytest.approx(grey_mean, abs=0.003)  # 2.35M Bernoulli draws


def test_binarization_follows_each_pixel():
    """Each pixel comes out 1 as often as it is bright: black stays 0, white stays 1."""
    levels = (torch.arange(28 * 28) % 256).to(torch.uint8).reshape(1, 1, 28, 28)
    data = DeviceData(levels.expand(4000, 1, 28, 28).clone(), torch.device("cpu"), binarized=True, dist=Dist())
    frequency = epoch_of(data, seed=3, epoch=1).mean(dim=0)
    assert torch.all(frequency[levels[0] == 0] == 0) and torch.all(frequency[levels[0] == 255] == 1)
    assert (frequency - levels[0].float() / 255).abs().max().item() < 0.05  # 6 sigma for 4000 draws


def test_binarization_redraws_every_epoch_and_repeats_for_the_same_seed(grey_images):
    data = DeviceData(grey_images, torch.device("cpu"), binarized=True, dist=Dist())
    first = epoch_of(data, seed=0, epoch=1)
    assert torch.equal(first, epoch_of(data, seed=0, epoch=1))
    assert not torch.equal(first, epoch_of(data, seed=0, epoch=2))
    assert not torch.equal(first, epoch_of(data, seed=1, epoch=1))
    # The same images in the same order, drawn again: the pixels differ, not just the order.
    unshuffled = DeviceData(grey_images[:1], torch.device("cpu"), binarized=True, dist=Dist())
    draws = torch.stack([epoch_of(unshuffled, 0, epoch, batch_size=1)[0] for epoch in range(1, 4)])
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])


def test_binarized_test_set_is_one_fixed_draw(grey_images):
    data = DeviceData(grey_images, torch.device("cpu"), binarized=True, dist=Dist())
    first = torch.cat(list(data.eval_batches(1000)))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first, torch.cat(list(data.eval_batches(1000))))


def test_grey_levels_are_scaled_not_binarized(grey_images):
    data = DeviceData(grey_images, torch.device("cpu"), binarized=False, dist=Dist())
    x = torch.cat(list(data.eval_batches(1000)))
    assert torch.equal(x, grey_images.float() / 255)
