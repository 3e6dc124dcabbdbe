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


def test_the_data_options_reach_the_run(own, capsys):
    folder = own / "mixed"
    folder.mkdir()
    for i, image in enumerate(_pictures(40, 3)):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    Image.fromarray(_pictures(1, 4)[0][:30]).save(folder / "wide.png")  # another size: resized and cropped
    run = own / "run"
    args = [
        "--image-size",
        "32",
        "--test-fraction",
        "0.2",
        "--on-bad",
        "stop",
        "--max-steps",
        "2",
        "--set",
        "batch_size=10",
    ]
    code, out = cli(capsys, "train", "vae-conv", "--data", str(folder), "--device", "cpu", "--out", str(run), *args)
    assert code == 0, out
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["data"] == {
        "path": str(folder.resolve()),
        "image_size": [32, 32],
        "test_fraction": 0.2,
        "split_seed": 0,
        "on_bad": "stop",
    }
    assert config["recipe"]["dataset"] == "files:mixed"
    assert Image.open(run / "samples" / "epoch-001.png").size == (8 * 34 + 2, 8 * 34 + 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data", "no-such-folder"), "no-such-folder"),
        (("--data", "{empty}"), "no image"),
        (("--data", "{good}", "--set", "dataset=mnist"), "not both"),
    ],
)
def test_bad_data_is_a_one_line_error(own, capsys, args, message):
    (own / "empty").mkdir()
    (own / "good").mkdir()
    for i, image in enumerate(_pictures(20, 3)):
        Image.fromarray(image).save(own / "good" / f"{i}.png")
    args = [a.replace("{empty}", str(own / "empty")).replace("{good}", str(own / "good")) for a in args]
    code, out = cli(capsys, "train", "vae-conv", *args, "--device", "cpu", "--out", str(own / "run"))
    assert code != 0 and message in out and "Traceback" not in out, out
    assert not (own / "run").exists()
