"""Training data held on the device as uint8 and served in shuffled, sharded float batches.

The order of an epoch and each process's share of it are defined here once, for both ways a split
is served: held on the device (:class:`DeviceData`) or streamed to it (:class:`zoo.streaming.StreamData`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from zoo.distributed import Dist
from zoo.errors import ZooError


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The shuffled order of an epoch of ``n`` images: a permutation drawn from ``(seed, epoch)`` alone,
    so it is the same after a resume and in every process."""
    order_gen = torch.Generator(device="cpu")
    order_gen.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=order_gen)


def train_steps(n: int, batch_size: int) -> int:
    """Whole batches in an epoch of ``n`` images (the ragged last batch is dropped)."""
    steps = n // batch_size
    if steps == 0:
        raise ZooError(f"batch size {batch_size} is larger than the training set ({n} images)")
    return steps


def rank_batches(order: Tensor, batch_size: int, dist: Dist) -> Iterator[Tensor]:
    """This process's indices of each global batch of ``order``: every ``world_size``-th one."""
    per_rank = batch_size // dist.world_size
    for step in range(train_steps(len(order), batch_size)):
        yield order[step * batch_size : (step + 1) * batch_size][dist.rank :: dist.world_size][:per_rank]


def eval_shard(n: int, dist: Dist) -> range:
    """This process's contiguous share of a split of ``n`` images, for evaluation in order."""
    return range(dist.rank * n // dist.world_size, (dist.rank + 1) * n // dist.world_size)


def pixel_generator(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def train_pixel_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of an epoch's binarization draws in one process."""
    return seed * 7919 + epoch * 104_729 + rank


#: The seed of the one fixed binarization of an evaluation split.
EVAL_PIXEL_SEED = 12345


def to_float(batch: Tensor, binarized: bool, generator: torch.Generator | None) -> Tensor:
    """A uint8 batch as floats in [0, 1]; binarized data sets redraw every pixel as Bernoulli(grey level)."""
    x = batch.float().div_(255.0)
    if binarized:
        x = torch.bernoulli(x, generator=generator)
    return x


class DeviceData:
    """A split held on the device as uint8 and served in batches by indexing.

    Each epoch's order is :func:`epoch_order`; under ``torchrun`` each process takes every
    ``world_size``-th index of each batch. Binarized data sets redraw every pixel as
    Bernoulli(grey level) at each use.
    """

    def __init__(self, images: Tensor, device: torch.device, binarized: bool, dist: Dist) -> None:
        self.images = images.to(device, non_blocking=True)
        self.device = device
        self.binarized = binarized
        self.dist = dist

    def __len__(self) -> int:
        return len(self.images)

    def train_batches(self, batch_size: int, seed: int, epoch: int) -> Iterator[Tensor]:
        """Yield this process's batches of a shuffled epoch; ``batch_size`` is the global batch."""
        order = epoch_order(len(self.images), seed, epoch).to(self.device)
        gen = pixel_generator(self.device, train_pixel_seed(seed, epoch, self.dist.rank)) if self.binarized else None
        for idx in rank_batches(order, batch_size, self.dist):
            yield to_float(self.images[idx], self.binarized, gen)

    def eval_batches(self, batch_size: int) -> Iterator[Tensor]:
        """This process's share of the split, in order. Binarized splits use one fixed draw."""
        gen = pixel_generator(self.device, EVAL_PIXEL_SEED) if self.binarized else None
        shard = eval_shard(len(self.images), self.dist)
        for start in range(shard.start, shard.stop, batch_size):
            yield to_float(self.images[start : min(start + batch_size, shard.stop)], self.binarized, gen)
