"""dSprites: the definition's factors and order, the rendering, the splits, the original file's format,
and the coloured variant; never the whole 3 GB set (its test split and factor images are rendered)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import zoo
from zoo import dsprites as S
from zoo.plugins import get_registry


def test_the_factors_and_their_order_are_the_definitions():
    classes = S.all_classes()
    assert S.COUNT == 737_280 and classes.shape == (737_280, 5)
    assert classes[1].tolist() == [0, 0, 0, 0, 1]  # posY varies fastest
    assert classes[1024].tolist() == [0, 0, 1, 0, 0] and classes[-1].tolist() == [2, 5, 39, 31, 31]
    values = S.factor_values(classes[[0, -1]])
    assert values[0].tolist() == [1.0, 0.5, 0.0, 0.0, 0.0]
    assert values[1].tolist() == pytest.approx([3.0, 1.0, 2 * np.pi, 1.0, 1.0])


def test_the_720_sprites_grow_with_scale_and_turn_whole_at_two_pi():
    sprites = S.sprites()
    assert sprites.shape == (3, 6, 40, 32, 32) and set(np.unique(sprites)) == {0, 1}
    area = sprites.sum(axis=(3, 4))
    assert (np.diff(area[:, :, 0], axis=1) > 0).all()  # every shape grows with scale
    assert (sprites[:, :, 0] == sprites[:, :, 39]).all()  # 0 and 2 pi are one orientation, as in the original
    assert (sprites[0, :, 0] == sprites[0, :, 0].transpose(0, 2, 1)).all()  # the unturned square is symmetric
    assert not (sprites[2, 5, 0] == sprites[2, 5, 20]).all()  # a heart turned by pi is another image
    assert (sprites[:, :, :, [0, -1], :] == 0).all() and (sprites[:, :, :, :, [0, -1]] == 0).all()  # inside the canvas


def test_render_places_the_sprite_by_whole_pixels():
    images = S.render(np.array([[1, 3, 7, 0, 0], [1, 3, 7, 5, 0], [1, 3, 7, 5, 9]]))
    assert images.shape == (3, 64, 64) and images.dtype == np.uint8
    assert (np.roll(images[0], 5, axis=1) == images[1]).all()  # posX moves right
    assert (np.roll(images[1], 9, axis=0) == images[2]).all()  # posY moves down
    with pytest.raises(zoo.ZooError, match="within"):
        S.render(np.array([[3, 0, 0, 0, 0]]))


def test_the_generated_set_fills_in_the_definitions_order():
    class FirstBlocks:
        """Keeps what is written into the first 2,048 images."""

        def __init__(self):
            self.kept = np.zeros((2048, 1, 64, 64), dtype=np.uint8)

        def __setitem__(self, index, value):
            rows, channel = index
            if rows.start < 2048:
                self.kept[rows, channel] = value

    out = FirstBlocks()
    S._fill_generated(out)
    assert (out.kept[:, 0] == S.render(S.all_classes()[:2048]) * 255).all()


def test_the_registered_set_test_split_and_factors(tmp_path):
    info = get_registry().get("dataset", "dsprites").load()
    assert info.shape == (1, 64, 64) and [n for n, _ in info.factors] == [
        "shape",
        "scale",
        "orientation",
        "posX",
        "posY",
    ]
    images, labels = info.load("test", tmp_path)  # rendered: the 3 GB training set is not built
    factors = info.load_factors("test", tmp_path)
    assert images.shape == (10_000, 1, 64, 64) and set(torch.unique(images).tolist()) == {0, 255}
    assert (labels.numpy() == factors[:, 0]).all()
    assert (factors == S.all_classes()[S.test_indices()]).all()
    assert (images[:5, 0].numpy() == S.render(factors[:5]) * 255).all()
    chosen = np.array([[2, 5, 3, 10, 20]])
    assert (info.images_for_factors(chosen, tmp_path)[0, 0].numpy() == S.render(chosen)[0] * 255).all()
    assert len(S.test_indices()) == 10_000 and len(np.unique(S.test_indices())) == 10_000
    # any first part of the split is a random sample: the first 500 images hold every shape and scale
    # (in the file's order they would all be small squares), so `zoo eval --limit 500` is representative
    first = factors[:500]
    assert set(first[:, 0]) == {0, 1, 2} and set(first[:, 1]) == set(range(6))
    assert abs(float(images[:500].float().mean() - images.float().mean())) < 0.1 * float(images.float().mean())


def test_the_coloured_variant_paints_each_sprite_in_its_colour(tmp_path):
    info = get_registry().get("dataset", "dsprites-colour").load()
    assert info.shape == (3, 64, 64) and info.factors[0] == ("colour", 6)
    classes = np.array([[c, 1, 5, 0, 16, 16] for c in range(6)])
    images = info.images_for_factors(classes, tmp_path)
    mask = S.render(classes[:, 1:]).astype(bool)
    for c, (_, rgb) in enumerate(S.COLOURS):
        painted = images[c].numpy()[:, mask[c]].T  # [pixels, 3]
        assert (painted == np.array(rgb)[None]).all()
        assert (images[c].numpy()[:, ~mask[c]] == 0).all()
    factors = info.load_factors("test", tmp_path)
    assert factors.shape == (10_000, 6) and (factors[:, 0] == S.colour_classes()[S.test_indices()]).all()
    assert set(np.unique(S.colour_classes())) == set(range(6))


def _original(folder, rows, imgs=None, classes=None):
    """A file in the original's format (keys imgs, latents_values, latents_classes, metadata) of ``rows``."""
    grid = S.all_classes()[rows]
    classes = np.concatenate([np.zeros((len(grid), 1), np.int64), grid], axis=1) if classes is None else classes
    values = np.concatenate([np.ones((len(grid), 1)), S.factor_values(grid)], axis=1)
    imgs = S.render(grid) if imgs is None else imgs
    folder.mkdir(parents=True, exist_ok=True)
    metadata = np.array({"description": "test"}, dtype=object)
    np.savez_compressed(
        folder / S.NPZ_NAME, imgs=imgs, latents_values=values, latents_classes=classes, metadata=metadata
    )
    return grid, imgs


def test_the_original_file_is_used_when_present(tmp_path):
    rows = np.arange(0, S.COUNT, 997)[:300]
    grid, imgs = _original(tmp_path / "dSprites", rows, imgs=1 - S.render(S.all_classes()[rows]))  # not our pixels
    train, labels = S.load_dsprites(tmp_path, "train", False)
    assert train.shape == (300, 1, 64, 64) and (train[:, 0].numpy() == imgs * 255).all()
    assert (labels.numpy() == grid[:, 0]).all()
    test, _ = S.load_dsprites(tmp_path, "test", False)
    assert len(test) == 30 and (test[:, 0].numpy() == imgs[S.test_indices(300)] * 255).all()
    assert (S.load_factors(tmp_path, "test", False) == grid[S.test_indices(300)]).all()
    found = S.images_for_factors(tmp_path, grid[[7, 3]], False)
    assert (found[:, 0].numpy() == imgs[[7, 3]] * 255).all()
    with pytest.raises(zoo.ZooError, match="does not hold every combination"):
        S.images_for_factors(tmp_path, S.all_classes()[[1]], False)
    info = dataclasses.replace(get_registry().get("dataset", "dsprites").load(), split_sizes={})
    assert len(info.load("train", tmp_path)[0]) == 300


@pytest.mark.parametrize(
    ("imgs", "classes", "match"),
    [
        (np.full((20, 64, 64), 2, np.uint8), None, "other than 0 and 1"),
        (np.zeros((20, 32, 32), np.uint8), None, "expected uint8 \\[20, 64, 64\\]"),
        (None, np.zeros((20, 4), np.int64), "expected \\[N, 6\\]"),
        (None, np.full((20, 6), 50, np.int64), "outside"),
    ],
)
def test_a_damaged_original_file_is_a_one_line_error(tmp_path, imgs, classes, match):
    S._source.cache_clear()
    _original(tmp_path, np.arange(20), imgs=imgs, classes=classes)
    with pytest.raises(zoo.ZooError, match=match):
        S.load_dsprites(tmp_path, "train", False)


def test_a_data_set_without_factors_says_so():
    info = get_registry().get("dataset", "mnist").load()
    assert info.factors == ()
    with pytest.raises(zoo.ZooError, match="no ground-truth factors"):
        info.load_factors("test")
