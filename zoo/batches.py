"""Training data held on the device as uint8 and served in shuffled, sharded float batches."""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.distributed import Dist
from zoo.errors import ZooError


class DeviceData:
    """A split held on the device as uint8 and served in batches by indexing.

    Each epoch's order is a permutation drawn from ``(seed, epoch)`` alone, so it is the same
    after a resume; under ``torchrun`` each process takes every ``world_size``-th index of it.
    Binarized data sets redraw every pixel as Bernoulli(grey level) at each use.
    """

    def __init__(self, images: Tensor, device: torch.device, binarized: bool, dist: Dist) -> None:
        self.images = images.to(device, non_blocking=True)
        self.device = device
        self.binarized = binarized
        self.dist = dist

    def __len__(self) -> int:
        return len(self.images)

    def _generator(self, seed: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        return g

    def _to_float(self, batch: Tensor, generator: torch.Generator | None) -> Tensor:
        x = batch.float().div_(255.0)
        if self.binarized:
            x = torch.bernoulli(x, generator=generator)
        return x

    def train_batches(self, batch_size: int, seed: int, epoch: int):
        """Yield this process's batches of a shuffled epoch; ``batch_size`` is the global batch."""
        order_gen = torch.Generator(device="cpu")
        order_gen.manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.images), generator=order_gen).to(self.device)
        per_rank = batch_size // self.dist.world_size
        steps = len(self.images) // batch_size  # drop the ragged last batch, as the seed's loop keeps all
        if steps == 0:
            raise ZooError(f"batch size {batch_size} is larger than the training set ({len(self.images)} images)")
        pixel_gen = self._generator(seed * 7919 + epoch * 104_729 + self.dist.rank) if self.binarized else None
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size][self.dist.rank :: self.dist.world_size]
            yield self._to_float(self.images[idx[:per_rank]], pixel_gen)

    def eval_batches(self, batch_size: int):
        """This process's share of the split, in order. Binarized splits use one fixed draw."""
        gen = self._generator(12345) if self.binarized else None
        n = len(self.images)
        shard = range(self.dist.rank * n // self.dist.world_size, (self.dist.rank + 1) * n // self.dist.world_size)
        for start in range(shard.start, shard.stop, batch_size):
            yield self._to_float(self.images[start : min(start + batch_size, shard.stop)], gen)
