"""FID's feature space: Inception where its weights are here, else a classifier trained on the data
set at hand, which learns rotations when the data set has no classes."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from zoo.errors import ZooError
from zoo.fid import pretext_labels, resolve_fid_features, train_feature_classifier


def test_auto_takes_the_classifier_without_torch_fidelity(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    features, why = resolve_fid_features("auto")
    assert features == "classifier" and "torch-fidelity is not installed" in why


def test_auto_takes_inception_where_its_weights_are_present(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    features, why = resolve_fid_features("auto")
    assert features == "classifier" and "weights are not in torch's hub cache" in why
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"x")
    assert resolve_fid_features("auto")[0] == "inception"
    assert resolve_fid_features("classifier") == ("classifier", "as asked")
    with pytest.raises(ZooError, match="auto, classifier, inception"):
        resolve_fid_features("clip")


def _corner_images(n: int, height: int, width: int) -> torch.Tensor:
    """Grey images with a bright block in the top-left corner: their rotation can be told."""
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 1, height, width, generator=g) * 60).to(torch.uint8)
    images[:, :, : height // 3, : width // 3] = 250
    return images


@pytest.mark.parametrize(("height", "width", "turns"), [(16, 16, 4), (14, 10, 2)])
def test_pretext_labels_turn_the_images(height, width, turns):
    images = _corner_images(64, height, width)
    turned, labels, classes = pretext_labels(images, torch.Generator().manual_seed(1))
    assert classes == turns and turned.shape == images.shape and set(labels.tolist()) == set(range(turns))
    for image, original, label in zip(turned, images, labels):
        k = int(label) if turns == 4 else 2 * int(label)
        assert torch.equal(image, torch.rot90(original, k, dims=(-2, -1)))


def test_a_data_set_without_classes_trains_a_rotation_classifier():
    train, test = _corner_images(2000, 16, 16), _corner_images(400, 16, 16)
    zeros = torch.zeros(len(train), dtype=torch.int64)
    net, record = train_feature_classifier((train, zeros), (test, zeros[:400]), num_classes=1)
    assert net.head.out_features == 4 and record["task"].startswith("rotation prediction")
    assert record["test_accuracy"] > 0.9, record  # chance is 0.25
