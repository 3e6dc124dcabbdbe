"""Small synthetic files in the exact on-disk format of each registered data set, with the images and
labels a loader must return from them (tests/test_datasets_registered.py)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

TRAIN, TEST = 10, 3  # images per split in the synthetic files (Frey Face: its real 1,965)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def write_idx(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()))


def write_idx_set(folder: str):
    def write(root: Path):
        expected = {}
        for split, stem, n in (("train", "train", TRAIN), ("test", "t10k", TEST)):
            images = rng(len(stem)).integers(0, 256, (n, 28, 28), dtype=np.uint8)
            labels = rng(n).integers(0, 10, n, dtype=np.uint8)
            write_idx(root / folder / "raw" / f"{stem}-images-idx3-ubyte.gz", images)
            write_idx(root / folder / "raw" / f"{stem}-labels-idx1-ubyte.gz", labels)
            expected[split] = (images[:, None], labels)
        return expected

    return write


def write_cifar(root: Path):
    """cifar-10-batches-py as the python version holds it: five training pickles, one test pickle, the
    metadata. Each row of ``data`` is 1024 red, 1024 green, 1024 blue bytes, each plane row by row."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    expected, generator = {"train": ([], []), "test": ([], [])}, rng(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = TRAIN // 5 if name != "test_batch" else TEST
        data = generator.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = generator.integers(0, 10, n).tolist()
        batch = {
            "batch_label": name,
            "labels": labels,
            "data": data,
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        (base / name).write_bytes(pickle.dumps(batch, protocol=2))
        split = "test" if name == "test_batch" else "train"
        expected[split][0].append(data.reshape(n, 3, 32, 32))
        expected[split][1].append(np.array(labels))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (base / "batches.meta").write_bytes(pickle.dumps({**meta, "num_cases_per_batch": 2, "num_vis": 3072}, protocol=2))
    return {split: (np.concatenate(x), np.concatenate(y)) for split, (x, y) in expected.items()}


def write_svhn(root: Path):
    """SVHN's format 2: ``X`` 32x32x3xN uint8 (height, width, channel, image), ``y`` Nx1 with 10 for 0."""
    expected = {}
    for split, n in (("train", TRAIN), ("test", TEST)):
        images = rng(n).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        digits = np.arange(n) % 10
        y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
        (root / "SVHN").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "SVHN" / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": y})
        expected[split] = (images, digits)
    return expected


#: Partition of each synthetic CelebA image: 0 train, 1 validation (unused), 2 test.
CELEBA_PARTITIONS = [0, 0, 1, 0, 2, 0, 0, 1, 0, 2, 0, 0, 0, 2, 0]


def celeba_reference(path: Path) -> np.ndarray:
    """The 64x64 version of one aligned image, computed with Pillow alone: the 148x148 square at
    (15, 35) (the centre of 178x218), resized bilinearly."""
    with Image.open(path) as image:
        square = image.convert("RGB").crop((15, 35, 163, 183)).resize((64, 64), Image.BILINEAR)
    return np.asarray(square).transpose(2, 0, 1)


def write_celeba(root: Path, partitions=CELEBA_PARTITIONS):
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    lines, expected = [], {"train": [], "test": []}
    y, x = np.mgrid[0:218, 0:178]
    for i, part in enumerate(partitions):
        name = f"{i + 1:06d}.jpg"
        noise = rng(i).integers(0, 60, (218, 178, 3))
        pixels = np.stack([x * 255 // 177, y * 255 // 217, np.full_like(x, 20 * i)], axis=-1) + noise
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / name, quality=95)
        lines.append(f"{name} {part}")
        split = {0: "train", 2: "test"}.get(part)
        if split:
            expected[split].append(celeba_reference(folder / name))
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return {s: (np.stack(images), np.zeros(len(images))) for s, images in expected.items()}


def omniglot_images(n: int, seed: int) -> np.ndarray:
    """Grey levels k/255 with an asymmetric stroke, so that a transposed or flipped image differs."""
    images = rng(seed).integers(0, 256, (n, 28, 28)).astype(np.uint8)
    images[:, 2:5, 3:20] = 255  # a bar across the top
    return images


def write_chardata(root: Path, train: int = TRAIN, test: int = TEST, **changes):
    """chardata.mat as the IWAE repository has it: one character per column of ``data`` (784 x N),
    28x28 stored column by column, values in [0, 1]; ``target`` one-hot alphabets (50 x N)."""
    contents, expected = {}, {}
    for split, n, key, target_key in (("train", train, "data", "target"), ("test", test, "testdata", "testtarget")):
        images = omniglot_images(n, seed=n)
        alphabets = np.arange(n) * 7 % 50
        contents[key] = (images.transpose(0, 2, 1).reshape(n, 784).T / 255.0).astype(np.float64)
        contents[target_key] = np.eye(50)[alphabets].T
        contents[target_key.replace("target", "targetchar")] = np.ones((1, n))
        expected[split] = (images[:, None], alphabets)
    contents.update(changes)
    (root / "Omniglot").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "Omniglot" / "chardata.mat", {k: v for k, v in contents.items() if v is not None})
    return expected


def frey_faces(seed: int = 0) -> np.ndarray:
    return rng(seed).integers(0, 256, (1965, 28, 20), dtype=np.uint8)


def write_frey_mat(root: Path, faces: np.ndarray | None = None):
    """frey_rawface.mat: ``ff`` 560 x 1965 uint8, one face per column, its 28 rows of 20 one after another."""
    faces = frey_faces() if faces is None else faces
    (root / "FreyFaces").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "FreyFaces" / "frey_rawface.mat", {"ff": faces.reshape(1965, 560).T.copy()})
    return frey_expected(faces)


def frey_expected(faces: np.ndarray):
    from zoo.datasets_papers import frey_split

    return {s: (faces[frey_split(s)][:, None], np.zeros(len(frey_split(s)))) for s in ("train", "test")}


WRITERS = {
    "mnist": write_idx_set("MNIST"),
    "binarized-mnist": write_idx_set("MNIST"),
    "fashion-mnist": write_idx_set("FashionMNIST"),
    "kmnist": write_idx_set("KMNIST"),
    "cifar10": write_cifar,
    "svhn": write_svhn,
    "celeba64": write_celeba,
    "omniglot": write_chardata,
    "binarized-omniglot": write_chardata,
    "frey-faces": write_frey_mat,
}
