"""Streaming a split to the device: the same batches as holding it there, the choice between the
two, resumes and the options that choose it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_reliability import cli, metric_rows, tiny, tiny_dir, train_args  # noqa: F401 - fixtures

from zoo.batches import DeviceData
from zoo.distributed import Dist
from zoo.errors import ZooError
from zoo.image_cache import decoded, mapped_file
from zoo.streaming import StreamData, choose_placement, split_data


@pytest.fixture
def cached_images(tmp_path, monkeypatch):
    """1,000 random 3x8x6 images decoded into zoo's cache, memory-mapped."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)

    def fill(out):
        out[:] = rng.integers(0, 256, size=out.shape, dtype=np.uint8)

    images, _ = decoded({"test": "streaming"}, (1000, 3, 8, 6), fill, "test images")
    return images


def _same(a, b) -> bool:
    a, b = list(a), list(b)
    return len(a) == len(b) > 0 and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("binarized", [False, True])
@pytest.mark.parametrize("workers", [0, 1])
def test_streamed_batches_are_the_held_ones(cached_images, binarized, workers):
    cpu, dist = torch.device("cpu"), Dist()
    assert mapped_file(cached_images) is not None, "the cache hands out a file-backed array"
    held = DeviceData(cached_images.clone(), cpu, binarized, dist)
    streamed = StreamData(cached_images, cpu, binarized, dist, workers=workers)
    for epoch in (1, 2):
        assert _same(held.train_batches(100, 3, epoch), streamed.train_batches(100, 3, epoch))
    assert not _same(streamed.train_batches(100, 3, 1), streamed.train_batches(100, 3, 2))
    assert _same(held.eval_batches(300), streamed.eval_batches(300))
    assert [len(b) for b in streamed.eval_batches(300)] == [300, 300, 300, 100]


def test_streaming_from_memory_serves_the_same_batches(cached_images):
    in_memory = cached_images.clone()
    assert mapped_file(in_memory) is None and mapped_file(cached_images[:10]) is None
    cpu, dist = torch.device("cpu"), Dist()
    a = StreamData(in_memory, cpu, False, dist, workers=1)
    b = StreamData(cached_images, cpu, False, dist, workers=0)
    assert _same(a.train_batches(50, 0, 4), b.train_batches(50, 0, 4))


def test_each_process_streams_its_share_and_every_image_once(cached_images):
    cpu = torch.device("cpu")
    seen = []
    for rank in range(2):
        data = StreamData(cached_images, cpu, False, Dist(rank=rank, world_size=2), workers=0)
        seen += [x for batch in data.train_batches(100, 5, 1) for x in batch]
        assert all(len(batch) == 50 for batch in data.train_batches(100, 5, 1))
    keys = {bytes((x * 255).round().to(torch.uint8).flatten().tolist()) for x in seen}
    assert len(seen) == 1000 and len(keys) == len({bytes(x.flatten().tolist()) for x in cached_images})


def test_a_truncated_cache_file_is_an_error_not_garbage(cached_images):
    path, offset = mapped_file(cached_images)
    data = StreamData(cached_images, torch.device("cpu"), False, Dist(), workers=0)
    with open(path, "r+b") as f:
        f.truncate(offset + 10 * 3 * 8 * 6)
    with pytest.raises(ZooError, match="delete it to decode the data again"):
        list(data.eval_batches(100))


def test_choose_placement(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr("zoo.streaming.free_memory", lambda device: 1000)
    assert choose_placement("auto", 400, cpu)[0] == "device"
    placement, why = choose_placement("auto", 600, cpu)
    assert placement == "stream" and "more than 50%" in why
    assert choose_placement("device", 10**12, cpu)[0] == "device"
    assert choose_placement("stream", 1, cpu)[0] == "stream"
    monkeypatch.setattr("zoo.streaming.free_memory", lambda device: None)
    assert choose_placement("auto", 10**12, cpu)[0] == "device"
    with pytest.raises(ZooError, match="auto, device, stream"):
        choose_placement("disk", 1, cpu)


def test_a_file_backed_split_held_on_the_cpu_is_read_into_memory(cached_images):
    held = split_data(cached_images, torch.device("cpu"), False, Dist(), "device")
    assert isinstance(held, DeviceData) and mapped_file(held.images) is None
    assert torch.equal(held.images, cached_images)


def test_streaming_trains_the_same_run_and_resumes_exactly(tiny, tmp_path, capsys):
    held, streamed, resumed = tmp_path / "held", tmp_path / "streamed", tmp_path / "resumed"
    assert cli(capsys, *train_args(held, "--epochs", "2"))[0] == 0
    code, out = cli(capsys, *train_args(streamed, "--epochs", "2", "--data-placement", "stream"))
    assert code == 0, out
    assert "data: streamed to cpu" in out
    losses = [(r["train_loss"], r["test_loss"]) for r in metric_rows(held)]
    assert [(r["train_loss"], r["test_loss"]) for r in metric_rows(streamed)] == losses
    assert cli(capsys, *train_args(resumed, "--epochs", "1", "--data-placement", "stream"))[0] == 0
    code, out = cli(capsys, "train", "--resume", str(resumed), "--epochs", "2", "--data-placement", "device")
    assert code == 0, out
    assert [(r["train_loss"], r["test_loss"]) for r in metric_rows(resumed)] == losses


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--data-workers", "-1"), "--data-workers must be a whole number from 0 to 64"),
        (("--data-placement", "disk"), "'disk' is not one of"),
        (("--image-size", "64"), "go with --data PATH"),
        (("--data", "x", "--image-size", "6x"), "--image-size must be a size in pixels"),
    ],
)
def test_bad_data_options_are_one_line_errors(tiny, tmp_path, capsys, args, message):
    code, out = cli(capsys, *train_args(tmp_path / "run", *args))
    assert code != 0 and message in out and "Traceback" not in out
    assert not (tmp_path / "run").exists()


def test_data_options_that_a_resume_keeps(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, *train_args(run, "--epochs", "1"))[0] == 0
    code, out = cli(capsys, "train", "--resume", str(run), "--epochs", "2", "--data", str(tmp_path))
    assert code != 0 and "--data cannot be given" in out
