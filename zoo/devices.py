"""Where and how a run computes: the device, the precision, deterministic kernels, seeds and the
random generators' state (what a checkpoint stores so a resumed run draws the same numbers)."""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from typing import Any

import torch

from zoo.errors import ZooError, ZooTypeError, ZooValueError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps`` -> a usable device, or a clear error
    (a :class:`zoo.errors.ZooTypeError` for what is not a name or a ``torch.device``, a
    :class:`zoo.errors.ZooValueError` for a name that is not a device here)."""
    if not isinstance(spec, (str, torch.device)):
        raise ZooTypeError(f"device must be a name such as 'cpu' or 'cuda:0', or a torch.device (got {spec!r})")
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ZooValueError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ZooError(f"--device {spec} asked for CUDA, but no CUDA device is available here; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ZooError(f"--device {spec}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % count)
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise ZooError(f"--device {spec} asked for Apple MPS, which is not available here; use --device cpu")
    elif device.type != "cpu":
        raise ZooValueError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision to train in. ``auto`` is fp32 off CUDA; on a CUDA device that supports bf16 it
    stays ``auto`` here and the trainer times both on the model before training (bf16 is not
    faster for every model: for the small reference VAE it is slower)."""
    if precision not in PRECISIONS:
        raise ZooError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "auto" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ZooError("--precision fp16 needs a CUDA device; use fp32 (or bf16) on this device")
    return precision


def measure_precision(
    one_pass: Callable[[str], None], module: torch.nn.Module, device: torch.device, passes: int = 10
) -> tuple[str, dict[str, float]]:
    """The faster of fp32 and bf16 autocast for a model on a CUDA device, and the trial's times.

    ``one_pass(precision)`` runs a forward and backward pass of ``module`` in that precision. Each
    is timed over ``passes`` calls after three untimed ones, alternated twice with the second
    round kept; bf16 is chosen only when it is clearly (1.25x) faster (for the small reference VAE
    it is slower). The passes leave no trace (:func:`zoo.cuda_graphs.leaving_no_trace`).
    """
    import sys

    from zoo.cuda_graphs import leaving_no_trace

    times: dict[str, float] = {}
    with leaving_no_trace(module, device):
        for candidate in ("fp32", "bf16", "fp32", "bf16"):
            for i in range(passes + 3):
                if i == 3:
                    torch.cuda.synchronize(device)
                    start = time.perf_counter()
                one_pass(candidate)
            torch.cuda.synchronize(device)
            times[candidate] = (time.perf_counter() - start) / passes * 1000
    choice = "bf16" if times["bf16"] * 1.25 < times["fp32"] else "fp32"
    print(
        f"precision auto: {choice} (forward+backward {times['fp32']:.2f} ms in fp32, "
        f"{times['bf16']:.2f} ms in bf16, measured on this model)",
        file=sys.stderr,
    )
    return choice, {f"{name}_ms_per_step": round(ms, 3) for name, ms in times.items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy

        numpy.random.seed(seed % 2**32)


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    state["python_version"] = random.getstate()[0]
    state["python_gauss"] = random.getstate()[2]
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# -- deterministic kernels --------------------------------------------------------------


#: cuBLAS is deterministic only with a fixed workspace (torch's reproducibility notes); set when
#: a run trains on CUDA with ``deterministic`` True or "auto" and the variable is not set already.
#: torch reads it once per process, at its first cuBLAS call: a Python session that has used CUDA
#: before sets it itself.
CUBLAS_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def deterministic_algorithms(mode: bool | str, device: torch.device):
    """Reproducible kernels while a run trains; the caller's settings are restored after.

    - ``True``: deterministic algorithms only (``torch.use_deterministic_algorithms``, cuDNN's
      deterministic algorithms without autotuning, a fixed cuBLAS workspace on CUDA); an op that
      has none raises a :class:`ZooError` naming it.
    - ``"auto"`` (the default): on CUDA, cuDNN's deterministic algorithms without autotuning and
      the fixed cuBLAS workspace, nothing that can raise; on other devices nothing changes. On the
      H100 this made a resumed ``vae-conv-mnist`` bit-identical to a straight run (docs/benchmarks.md).
    - ``False``: nothing changes.
    """
    full = mode is True
    if not (full or (mode == "auto" and device.type == "cuda")):
        yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    set_workspace = device.type == "cuda" and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    if set_workspace:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    if full:
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        if not full or "deterministic" not in text.lower():
            raise
        raise ZooError(
            f"--deterministic: {text.split(', but you set')[0][:200]} on {device.type}; "
            "train this model without --deterministic"
        ) from None
    finally:
        if set_workspace:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
