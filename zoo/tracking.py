"""Following runs with the usual tools: TensorBoard event files beside zoo's own files.

When ``tensorboard`` is installed (``pip install 'zoo[tensorboard]'``), every run also writes
``RUN/tensorboard/events.out.tfevents.*`` through ``torch.utils.tensorboard``: each epoch's
metrics as scalars (``test/loss``, ``train/loss``, ``train/<what the objective logs>``...) and
its sample and reconstruction grids as images. Without it nothing changes: no folder, no
warning. ``tensorboard --logdir runs`` then shows every run side by side.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from torch import Tensor

FOLDER = "tensorboard"


def _tag(key: str) -> str:
    for prefix in ("train_", "test_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix) :]}"
    return f"run/{key}"


class TensorBoardLog:
    """Scalars and image grids of one run, written by its main process only."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    @classmethod
    def open(cls, run: str | os.PathLike, first_epoch: int = 1) -> TensorBoardLog | None:
        """A log in ``run/tensorboard``, or ``None`` when tensorboard is not installed.

        ``first_epoch`` > 1 (a resume) drops whatever an interrupted process logged for that epoch
        and later, so each epoch appears once, as in ``metrics.jsonl``.
        """
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        folder = Path(run) / FOLDER
        return cls(SummaryWriter(str(folder), purge_step=first_epoch if first_epoch > 1 else None))

    def epoch(self, row: dict[str, Any], images: dict[str, tuple[Tensor, int]]) -> None:
        """One epoch: every finite number of its metrics row, and each ``(images, per row)`` batch
        of 4-d images as one grid."""
        from torchvision.utils import make_grid

        step = int(row["epoch"])
        for key, value in row.items():
            if (
                key != "epoch"
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                self.writer.add_scalar(_tag(key), value, step)
        for name, (batch, per_row) in images.items():
            if batch.dim() == 4:
                grid = make_grid(batch.detach().float().clamp(0, 1).cpu(), nrow=per_row, padding=2)
                self.writer.add_image(name, grid, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
