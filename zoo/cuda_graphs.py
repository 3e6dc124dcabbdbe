"""The training step replayed from a CUDA graph: when it can be, warm-up, capture, replay, and the
checks that keep a step which cannot be captured from being half-captured."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import ZooError, first_line


def graph_problem(
    device: torch.device, *, enabled: bool, distributed: bool, precision: str, module: nn.Module
) -> str | None:
    """Why the training step of ``module`` is not replayed from a CUDA graph (None: it is)."""
    if device.type != "cuda":
        return "not a CUDA device"
    if not enabled:
        return "--no-cuda-graph"
    if distributed:
        return "torchrun (DistributedDataParallel steps are not captured)"
    if precision == "fp16":
        return "--precision fp16 (the gradient scaler checks for inf on the host)"
    unsafe = sorted({type(m).__name__ for m in module.modules() if getattr(m, "cuda_graph_safe", True) is False})
    if unsafe:
        return f"{', '.join(unsafe)} set cuda_graph_safe = False (per-step state kept in Python)"
    return None


@contextlib.contextmanager
def host_syncs_refused(on: bool):
    """With ``on``, CUDA operations that make the host wait for the device raise (the caller's
    mode is restored after)."""
    if not on:
        yield
        return
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():  # "a prototype feature": printed to every CUDA run otherwise
        warnings.simplefilter("ignore", UserWarning)
        torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(before)


def capture_graph(step: Callable[[], None], device: torch.device) -> Any:
    """``step`` captured in a CUDA graph on ``device`` (not run: ``replay()`` runs it)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(device), torch.cuda.graph(graph):
        step()
    return graph


@contextlib.contextmanager
def leaving_no_trace(module: nn.Module, device: torch.device):
    """Passes run inside leave the run as it was: the random generators are forked and the
    module's buffers (a KL warm-up's step count, batch-norm statistics) restored after."""
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:  # also when a pass fails (a step that cannot be captured): the run goes on from here
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


class GraphedStep:
    """Runs a training step from a CUDA graph: the batch is copied into a static input and the whole
    step (forward, backward, clipping, optimizer, the epoch's sums) runs as one launch.

    ``step(x, captured=False)`` is the eager step and ``loss(x)`` its forward pass (for the warm-up);
    ``sums`` is the dict of per-epoch sums the step adds into (created here before a capture). The
    graph is captured once the optimizer has its state (after the first eager step of a new run, at
    once on a resume), and again when the learning rate or the batch shape changes. A step that
    cannot be captured (a component that reads a value on the host, for instance) turns graphs off
    for the run (``on`` becomes False), with one line saying why; the step then runs eagerly.
    """

    def __init__(
        self,
        step: Callable[..., None],
        loss: Callable[[Tensor], tuple[Tensor, dict[str, Tensor]]],
        optimizer: torch.optim.Optimizer,
        module: nn.Module,
        sums: dict[str, Tensor],
        device: torch.device,
        *,
        compiled: bool,
    ) -> None:
        self.step, self.loss, self.optimizer, self.module = step, loss, optimizer, module
        self.sums, self.device, self.compiled = sums, device, compiled
        self.on = True
        self.graph: Any = None
        self.key: Any = None
        self.static_x: Tensor | None = None

    def __call__(self, x: Tensor) -> None:
        key = (tuple(group["lr"] for group in self.optimizer.param_groups), tuple(x.shape), x.stride())
        if self.graph is None or key != self.key:
            if not self._optimizer_ready():
                self.step(x)  # the first step of a new run creates the optimizer state
                return
            try:
                self._capture(x)
            except Exception as exc:  # noqa: BLE001 - anything capture refuses: fall back to eager
                self._off(exc)
                self._eager_after_failed_capture(x, exc)
                return
            self.key = key
        self.static_x.copy_(x)
        self.graph.replay()

    def _optimizer_ready(self) -> bool:
        """Whether every trained parameter has optimizer state (a graph must not create it)."""
        return all(self.optimizer.state.get(p) for group in self.optimizer.param_groups for p in group["params"])

    def _capture(self, x: Tensor) -> None:
        self.graph = None  # release the previous graph's memory first
        if self.static_x is None or self.static_x.shape != x.shape or self.static_x.stride() != x.stride():
            self.static_x = torch.empty_like(x)
        self.static_x.copy_(x)
        self.warm_up(self.static_x)
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = capture_graph(lambda: self.step(self.static_x, captured=True), self.device)

    def _eager_after_failed_capture(self, x: Tensor, exc: BaseException) -> None:
        """The step, eagerly, after a capture failed. A capture that fails once begun can leave the
        CUDA random generator marked as capturing (torch 2.11 and older), so that every later draw
        fails; the run then stops with one line instead of a traceback (its last checkpoint stands)."""
        try:
            self.step(x)
        except RuntimeError as later:
            if "capture" not in str(later).lower():
                raise
            raise ZooError(
                f"the training step could not be captured in a CUDA graph ({first_line(exc)}), and "
                f"CUDA cannot go on in this process after that ({first_line(later)}); run it with "
                "--no-cuda-graph (zoo train --resume RUN --no-cuda-graph continues from the last "
                "checkpoint)"
            ) from None

    def warm_up(self, x: Tensor) -> None:
        """Forward and backward passes on a side stream before capture (CUDA libraries set up their
        handles and workspaces there), leaving no trace: the random generators are forked, buffers
        restored and gradients dropped.

        On CUDA the passes run with synchronizing operations made errors
        (``torch.cuda.set_sync_debug_mode``): a step that reads a value on the host (``float(loss)``,
        ``.item()``, a boolean mask) would fail inside the capture, so it is refused here, before a
        capture begins, and the run goes on eagerly with nothing half-captured. With ``--compile`` the
        first pass is let through: it may be the one that compiles (on a resume), and compiling is
        not the step; the second pass runs the compiled step under the check.
        """
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        if cuda:
            stream.wait_stream(torch.cuda.current_stream(self.device))
        with (
            leaving_no_trace(self.module, self.device),
            torch.cuda.stream(stream) if cuda else contextlib.nullcontext(),
        ):
            for i in range(2):
                with host_syncs_refused(self.syncs_refused_in_pass(i)):
                    loss, logs = self.loss(x)[:2]
                    loss.backward()
                self.optimizer.zero_grad(set_to_none=True)
                for key, value in logs.items():  # the sums the graph adds into must exist before capture
                    if key not in self.sums:
                        self.sums[key] = torch.zeros_like(value.detach().float())
        if cuda:
            torch.cuda.current_stream(self.device).wait_stream(stream)

    def syncs_refused_in_pass(self, i: int) -> bool:
        """Whether warm-up pass ``i`` (0 or 1) runs with host syncs made errors (see :meth:`warm_up`)."""
        return self.device.type == "cuda" and (i == 1 or not self.compiled)

    def _off(self, exc: BaseException) -> None:
        self.on = False
        self.graph = self.key = self.static_x = None
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        print(
            f"note: the training step could not be captured in a CUDA graph ({first_line(exc)}); training on "
            "without one (--no-cuda-graph skips the attempt)",
            file=sys.stderr,
        )
