"""FID: the Frechet distance between generated and test images, computed by torchmetrics in the
feature space of a small classifier trained on the data set's training images and cached
(:func:`feature_network`), or of Inception-v3 (:func:`inception_features`); ``auto`` takes
Inception's where its weights are on this machine (:func:`resolve_fid_features`)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.checkpoint import atomic_write
from zoo.errors import ZooError

#: Bump when the feature classifier's architecture or training changes: old caches are retrained.
FEATURE_NET_VERSION = 2
FID_FEATURES = ("auto", "classifier", "inception")


class FeatureClassifier(nn.Module):
    """A small convnet classifier; :meth:`features` (the penultimate layer) is FID's feature space."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, num_features: int = 128) -> None:
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(7),
            nn.Flatten(),
            nn.Linear(2 * width * 49, num_features),
            nn.ReLU(),
        )
        self.head = nn.Linear(num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class _Features(nn.Module):
    """What torchmetrics calls: images in [0, 1] -> the classifier's features."""

    def __init__(self, classifier: FeatureClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.features(x.float())


def inception_unavailable() -> str | None:
    """Why Inception-v3 features cannot be had offline here (None when torch-fidelity and its
    weights, in torch's hub cache, are present)."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return "torch-fidelity is not installed"
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    if any(folder.glob("*inception-2015-12-05*.pth")):
        return None
    return f"its weights are not in torch's hub cache ({folder})"


def resolve_fid_features(requested: str) -> tuple[str, str]:
    """The feature space ``requested`` (``auto``, ``classifier`` or ``inception``) means here, and why."""
    if requested not in FID_FEATURES:
        raise ZooError(f"unknown --fid-features {requested!r}; use {', '.join(FID_FEATURES)}")
    if requested != "auto":
        return requested, "as asked"
    missing = inception_unavailable()
    if missing is None:
        return "inception", "Inception-v3's weights are present"
    return "classifier", f"Inception-v3 unavailable: {missing}"


def pretext_labels(images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, int]:
    """For data without classes: each image turned by a random multiple of 90 degrees (180 for
    non-square images) and the turn as its label, so the classifier learns the images' structure."""
    square = images.shape[-1] == images.shape[-2]
    turns = 4 if square else 2
    labels = torch.randint(0, turns, (len(images),), generator=generator)
    out = images.clone()
    for k in range(1, turns):
        chosen = labels == k
        if chosen.any():
            out[chosen] = torch.rot90(images[chosen], k if square else 2, dims=(-2, -1))
    return out, labels, turns


def _data_hash(images: Tensor, labels: Tensor) -> str:
    digest = hashlib.sha256()
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def train_feature_classifier(
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    num_classes: int,
    epochs: int = 1,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 2e-3,
) -> tuple[FeatureClassifier, dict[str, Any]]:
    """Train :class:`FeatureClassifier` on uint8 ``train`` images; returns it and how it was made.

    A data set with fewer than 2 classes is given :func:`pretext_labels` (rotation prediction)."""
    images, labels = train
    start = time.perf_counter()
    pretext = num_classes < 2
    if pretext:
        turn_gen = torch.Generator().manual_seed(seed)
        images, labels, num_classes = pretext_labels(images, turn_gen)
        test = pretext_labels(test[0], turn_gen)[:2]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureClassifier(images.shape[1], num_classes)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        order_gen = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=order_gen)
            for i in range(0, len(images), batch_size):
                idx = order[i : i + batch_size]
                loss = nn.functional.cross_entropy(net(images[idx].float() / 255), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    net.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(test[0]), 1000):
            correct += int((net(test[0][i : i + 1000].float() / 255).argmax(1) == test[1][i : i + 1000]).sum())
    record = {
        "architecture": str(net),
        "num_features": net.num_features,
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "optimizer": f"Adam(lr={lr})",
        "train_images": len(images),
        "test_images": len(test[0]),
        "test_accuracy": correct / max(1, len(test[0])),
        "task": "rotation prediction (the data set has no classes)" if pretext else "classification",
        "train_seconds": round(time.perf_counter() - start, 2),
        "torch": torch.__version__,
    }
    return net, record


def feature_network(
    dataset, data_dir: str | os.PathLike | None = None, *, progress: bool | None = False, cache: Path | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The FID feature extractor for ``dataset`` (a :class:`zoo.DatasetInfo`), and how it was made.

    A :class:`FeatureClassifier` trained for one epoch on the data set's training images (grey
    levels, whatever the model was trained on) and cached under the user cache dir, keyed by a
    hash of the training data, with a JSON record beside the weights. The first use trains it
    (seconds to a minute on a CPU); later uses load it.
    """
    from zoo.data import cache_dir

    train = dataset.load("train", data_dir)
    key = _data_hash(*train)
    folder = cache or cache_dir() / "fid"
    stem = f"classifier-v{FEATURE_NET_VERSION}-{key[:16]}"
    weights, info_path = folder / f"{stem}.pt", folder / f"{stem}.json"
    if weights.is_file() and info_path.is_file():
        try:
            record = json.loads(info_path.read_text())
            net = FeatureClassifier(train[0].shape[1], record["head_classes"], num_features=record["num_features"])
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            if record.get("data_sha256") == key:
                return _Features(net.eval()), record
        except Exception:  # noqa: BLE001 - any damaged or foreign cache entry is retrained below
            pass
    if progress is not False:
        print(
            f"training the FID feature classifier on {dataset.id} ({len(train[0])} images, 1 epoch); "
            f"cached in {folder}",
            file=sys.stderr,
            flush=True,
        )
    net, record = train_feature_classifier(train, dataset.load("test", data_dir), num_classes=dataset.num_classes)
    record.update(
        dataset=dataset.id,
        num_classes=dataset.num_classes,
        head_classes=net.head.out_features,
        data_sha256=key,
        version=FEATURE_NET_VERSION,
        made_by="zoo.fid.train_feature_classifier",
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(weights, lambda f: torch.save(net.state_dict(), f))
        atomic_write(info_path, lambda f: f.write(json.dumps(record, indent=2).encode()))
    except OSError as exc:
        print(f"warning: could not cache the FID classifier in {folder}: {exc}", file=sys.stderr)
    return _Features(net), record


def inception_features() -> nn.Module:
    """torchmetrics' Inception-v3 (2048 features); needs torch-fidelity and its weights."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise ZooError(
            "--fid-features inception needs torch-fidelity (pip install torch-fidelity); "
            "the default --fid-features classifier works offline"
        ) from None
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
    except Exception as exc:  # noqa: BLE001 - typically: weights not downloadable offline
        raise ZooError(
            f"could not load the Inception weights ({type(exc).__name__}: {str(exc)[:200]}); "
            "use --fid-features classifier offline"
        ) from None


class _InceptionInput(nn.Module):
    """Grey-level or colour images in [0, 1] -> the uint8 RGB Inception expects."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception
        self.num_features = 2048

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, *x.shape[2:])
        return self.inception((x.clamp(0, 1) * 255).to(torch.uint8))


@torch.no_grad()
def frechet_distance(
    real: Iterable[Tensor], fake: Iterable[Tensor], features: nn.Module, device: torch.device | str = "cpu"
) -> float:
    """FID between two streams of image batches ([B, C, H, W] in [0, 1]) in the space of ``features``.

    Computed by :class:`torchmetrics.image.fid.FrechetInceptionDistance` with ``features`` as its
    feature extractor (a module with a ``num_features`` attribute).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=features, normalize=True).to(device)
    for batch in real:
        metric.update(batch.to(device), real=True)
    for batch in fake:
        metric.update(batch.to(device), real=False)
    if int(metric.real_features_num_samples) < 2 or int(metric.fake_features_num_samples) < 2:
        raise ZooError("FID needs at least 2 real and 2 generated images")
    return float(metric.compute())
