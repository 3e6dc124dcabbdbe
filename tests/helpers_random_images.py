"""A small data set of random 8x8 grey images (400 train, 100 test) for tests that register one in
process with ``zoo.register``."""

from __future__ import annotations

import torch

SIDE = 8


def load(root, split, download):
    """The loader of :func:`dataset`: seeded uint8 images, labels all 0."""
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = 400 if split == "train" else 100
    return (torch.rand(n, 1, SIDE, SIDE, generator=g) * 255).to(torch.uint8), torch.zeros(n, dtype=torch.int64)


def dataset(id: str):
    """A ``zoo.DatasetInfo`` named ``id`` serving :func:`load`."""
    import zoo

    return zoo.DatasetInfo(id, "random 8x8 images", (1, SIDE, SIDE), load)
