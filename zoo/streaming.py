"""Data streamed to the device batch by batch, for splits that do not fit on it, and the choice
between holding a split on the device and streaming it.

A streamed split is served in exactly the batches :class:`zoo.batches.DeviceData` serves (the
same epoch order, the same share per process, the same binarization draws), so the choice never
changes a run's numbers. Batches are gathered as uint8 in torch DataLoader worker processes, from
host memory or, for a data set decoded into zoo's cache (:mod:`zoo.image_cache`), read from its
file with ``os.preadv`` (the page cache, not the process, holds what was read, so the host memory a
run uses does not grow with the data set), pinned, and copied to the device one batch ahead of the
step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from zoo.batches import (
    EVAL_PIXEL_SEED,
    DeviceData,
    epoch_order,
    eval_shard,
    pixel_generator,
    rank_batches,
    to_float,
    train_pixel_seed,
)
from zoo.distributed import Dist
from zoo.errors import ZooError

PLACEMENTS = ("auto", "device", "stream")

#: ``auto`` holds the data on the device when both splits take at most this share of its free memory
#: (the rest is for the model, its activations and the optimizer).
DEVICE_SHARE = 0.5


def free_memory(device: torch.device) -> int | None:
    """Bytes free on ``device`` now (host memory available for the CPU); None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def choose_placement(requested: str, nbytes: int, device: torch.device) -> tuple[str, str]:
    """``"device"`` or ``"stream"`` for data of ``nbytes``, and why, in a few words."""
    if requested not in PLACEMENTS:
        raise ZooError(f"data placement must be one of {', '.join(PLACEMENTS)} (got {requested!r})")
    size = f"{nbytes / 2**20:,.0f} MiB"
    if requested != "auto":
        return requested, f"{size}, {requested} as asked"
    free = free_memory(device)
    if free is None:
        return "device", f"{size}; free memory unknown, held on the device"
    where = "host memory" if device.type == "cpu" else f"{device.type} memory"
    if nbytes <= DEVICE_SHARE * free:
        return "device", f"{size} fits in {free / 2**20:,.0f} MiB of free {where}"
    return "stream", f"{size} is more than {DEVICE_SHARE:.0%} of {free / 2**20:,.0f} MiB of free {where}"


class _Gather(torch.utils.data.Dataset):
    """The uint8 images at a list of indices, from memory or read from the data set's file."""

    def __init__(self, images: Tensor) -> None:
        from zoo.image_cache import mapped_file

        self.images = images
        self.count = len(images)
        self.item_shape = tuple(images.shape[1:])
        self.item_bytes = math.prod(self.item_shape)
        self.file = mapped_file(images) if hasattr(os, "preadv") else None
        self._fd: tuple[int, int] | None = None  # (pid, fd): a worker opens its own

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__, _fd=None)
        if self.file is not None:
            state["images"] = None  # a worker reads the file; never pickle a memory-mapped set
        return state

    def __getitem__(self, idx: Tensor) -> Tensor:
        if self.file is None:
            return self.images[idx]
        if self._fd is None or self._fd[0] != os.getpid():
            self._fd = (os.getpid(), os.open(self.file[0], os.O_RDONLY))
        fd, (_, offset) = self._fd[1], self.file
        out = torch.empty((len(idx), *self.item_shape), dtype=torch.uint8)
        rows = out.view(len(idx), -1).numpy()
        for row, i in zip(rows, idx.tolist()):
            got = os.preadv(fd, [row], offset + i * self.item_bytes)
            if got != self.item_bytes:
                raise ZooError(f"{self.file[0]} is shorter than its header says; delete it to decode the data again")
        return out


class _Batches(torch.utils.data.Sampler):
    """The index lists of one pass, set before each pass (the loader's workers persist across passes)."""

    def __init__(self) -> None:
        self.batches: list[Tensor] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def default_workers(device: torch.device) -> int:
    """Loader processes: none on a CPU device, where every core computes and a batch's positioned
    reads cost a fraction of a millisecond in the training process; beside an accelerator up to 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 0 if device.type == "cpu" else max(1, min(4, cores - 1))


class StreamData:
    """A split kept on the host (in memory or in its cached file) and streamed to the device.

    Serves the same batches as :class:`zoo.batches.DeviceData` for the same seed and epoch.
    """

    def __init__(
        self, images: Tensor, device: torch.device, binarized: bool, dist: Dist, *, workers: int | None = None
    ) -> None:
        self.device = device
        self.binarized = binarized
        self.dist = dist
        self.workers = default_workers(device) if workers is None else int(workers)
        self._gather = _Gather(images)
        self._sampler = _Batches()
        self._loader = torch.utils.data.DataLoader(
            self._gather,
            batch_size=None,
            sampler=self._sampler,
            num_workers=self.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=self.workers > 0,
            prefetch_factor=4 if self.workers > 0 else None,
            # Its own generator: the loader draws a worker seed at every pass, which must not come from
            # the global generator the model's noise is drawn from (streaming would change the run).
            generator=torch.Generator().manual_seed(0),
        )

    def __len__(self) -> int:
        return len(self._gather)

    def _stream(self, batches: list[Tensor]) -> Iterator[Tensor]:
        """uint8 batches on the device, each copy started before the previous batch is handed out."""
        self._sampler.batches = batches
        pending = None
        for batch in self._loader:
            batch = batch.to(self.device, non_blocking=True)
            if pending is not None:
                yield pending
            pending = batch
        if pending is not None:
            yield pending

    def train_batches(self, batch_size: int, seed: int, epoch: int) -> Iterator[Tensor]:
        order = epoch_order(len(self), seed, epoch)
        batches = list(rank_batches(order, batch_size, self.dist))
        gen = pixel_generator(self.device, train_pixel_seed(seed, epoch, self.dist.rank)) if self.binarized else None
        for batch in self._stream(batches):
            yield to_float(batch, self.binarized, gen)

    def eval_batches(self, batch_size: int) -> Iterator[Tensor]:
        gen = pixel_generator(self.device, EVAL_PIXEL_SEED) if self.binarized else None
        shard = eval_shard(len(self), self.dist)
        batches = [torch.arange(s, min(s + batch_size, shard.stop)) for s in range(shard.start, shard.stop, batch_size)]
        for batch in self._stream(batches):
            yield to_float(batch, self.binarized, gen)


def split_data(
    images: Tensor, device: torch.device, binarized: bool, dist: Dist, placement: str, *, workers: int | None = None
) -> DeviceData | StreamData:
    """A split served the way ``placement`` (``"device"`` or ``"stream"``) says."""
    if placement == "stream":
        return StreamData(images, device, binarized, dist, workers=workers)
    from zoo.image_cache import mapped_file

    if device.type == "cpu" and mapped_file(images) is not None:
        images = images.clone()  # held in memory: read the file once, not page by page during training
    return DeviceData(images, device, binarized, dist)
