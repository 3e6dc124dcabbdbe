"""A stranger's own images, end to end through the commands a user runs: a folder of 40x40 colour
PNGs and an .npz array train, evaluate, sample colour grids, resume and compare with no other
change than ``--data PATH``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_reliability import cli  # in-process ``zoo ARGS`` -> (exit code, output)

SIDE = 40


def _pictures(count: int, seed: int) -> np.ndarray:
    """``count`` colour 40x40 images [N, H, W, 3]: a coloured disc on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    images = np.empty((count, SIDE, SIDE, 3), dtype=np.uint8)
    for i in range(count):
        cx, cy = rng.uniform(0.3, 0.7, 2)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < 0.06)[..., None]
        images[i] = np.clip(disc * rng.uniform(80, 255, 3) + 20 + rng.normal(0, 8, (SIDE, SIDE, 3)), 0, 255)
    return images


@pytest.fixture
def own(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_PLUGINS", "aevb")
    return tmp_path


def _folder(root: Path) -> Path:
    folder = root / "holiday-pictures"
    for split, count, seed in (("train", 300, 1), ("test", 100, 2)):
        (folder / split / "beach").mkdir(parents=True)
        for i, image in enumerate(_pictures(count, seed)):
            Image.fromarray(image).save(folder / split / "beach" / f"{i:04d}.png")
    return folder


def _npz(root: Path) -> Path:
    path = root / "pictures.npz"
    np.savez(path, train=_pictures(300, 1), test=_pictures(100, 2))
    return path


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("make", [_folder, _npz], ids=["folder", "npz"])
def test_own_images_train_evaluate_sample_resume_and_compare(own, capsys, make):
    data = make(own)
    run, whole = own / "run", own / "whole"
    base = ["train", "vae-conv", "--data", str(data), "--device", "cpu", "--seed", "1", "--set", "batch_size=50"]
    code, out = cli(capsys, *base, "--epochs", "1", "--out", str(run))
    assert code == 0, out
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["data"]["path"] == str(data.resolve())
    assert Image.open(run / "samples" / "epoch-001.png").mode == "RGB"

    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "2")
    assert code == 0, out
    code, out = cli(capsys, *base, "--epochs", "2", "--out", str(whole))
    assert code == 0, out
    assert [r["test_loss"] for r in _rows(run)] == [r["test_loss"] for r in _rows(whole)], "resume is exact"

    code, out = cli(capsys, "sample", str(run), "--n", "16", "--out", str(own / "s.png"))
    assert code == 0, out
    grid = Image.open(own / "s.png")  # 16 images of the data's size, 8 a row, 2 pixels apart
    assert grid.mode == "RGB" and grid.size == (8 * (SIDE + 2) + 2, 2 * (SIDE + 2) + 2)

    code, out = cli(capsys, "eval", str(run), "--iw-samples", "5", "--out", str(own / "eval"))
    assert code == 0, out
    metrics = json.loads((own / "eval" / "metrics.json").read_text())
    assert metrics["n_images"] == 100 and np.isfinite(metrics["test_neg_elbo"])
    assert metrics["fid_features"] in ("classifier", "inception")

    code, out = cli(capsys, "compare", str(run), str(whole))
    assert code == 0, out
