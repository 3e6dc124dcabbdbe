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
import sys
import threading
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
    """Scalars and image grids of one run, written by its main process only.

    TensorBoard's files are a convenience beside zoo's own: when they cannot be written (a full
    disk, a path the writer cannot encode) a one-line warning says so and the run goes on without
    them; ``metrics.jsonl`` still has every epoch. The writer's background thread does not print
    its traceback: its failure is reported once, here, by the process's main thread.
    """

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    @classmethod
    def open(cls, run: str | os.PathLike, first_epoch: int = 1) -> TensorBoardLog | None:
        """A log in ``run/tensorboard``, or ``None`` when tensorboard is not installed or cannot write there.

        ``first_epoch`` > 1 (a resume) drops whatever an interrupted process logged for that epoch
        and later, so each epoch appears once, as in ``metrics.jsonl``.
        """
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        folder = Path(run) / FOLDER
        try:
            os.fspath(folder).encode("utf-8")
        except UnicodeEncodeError:
            _warn(f"no TensorBoard log: its writer needs a UTF-8 path, and {os.fsencode(folder)!r} is not one")
            return None
        _quiet_writer_threads()
        try:
            return cls(SummaryWriter(str(folder), purge_step=first_epoch if first_epoch > 1 else None))
        except Exception as exc:  # noqa: BLE001 - a convenience: the run goes on without it
            _warn(f"no TensorBoard log in {folder}: {_reason(exc)}")
            return None

    def epoch(self, row: dict[str, Any], images: dict[str, tuple[Tensor, int]]) -> None:
        """One epoch: every finite number of its metrics row, and each ``(images, per row)`` batch
        of 4-d images as one grid."""
        if self.writer is None:
            return
        from torchvision.utils import make_grid

        step = int(row["epoch"])
        try:
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
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._stop(exc)

    def _stop(self, exc: BaseException) -> None:
        _warn(f"TensorBoard logging stopped: {_reason(exc)}; the run goes on, and metrics.jsonl has every epoch")
        writer, self.writer = self.writer, None
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - it failed already
            pass

    def close(self) -> None:
        if self.writer is None:
            return
        try:
            self.writer.close()
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._stop(exc)
        self.writer = None


def _reason(exc: BaseException) -> str:
    from zoo.errors import first_line

    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)) or type(exc).__name__


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _quiet_writer_threads() -> None:
    """Let TensorBoard's writer threads fail without printing a traceback: the main thread finds
    the failure at its next write or flush and reports it as one line (:meth:`TensorBoardLog._stop`)."""
    if getattr(threading.excepthook, "_zoo_quiet", False):
        return
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(args.exc_type, Exception):
            return
        previous(args)

    hook._zoo_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook
