"""Is a resumed run bit-identical to an uninterrupted one on this device, and what does it cost?

Trains a recipe for N epochs straight (``--epochs``, default 2), and for 1 epoch then resumed to N
(``Trainer.resume``, as ``zoo train --resume`` does), in this process, and compares the final
weights and optimizer state tensor by tensor. With ``--rerun`` it also trains the straight run a
second time and compares the two (a difference there is run-to-run variation, not the resume's).
On the CPU the suite checks this on every run; on a GPU it depends on cuDNN's and cuBLAS's
algorithms (some add with atomics, in an order that changes from run to run). Modes, the values
of ``zoo.Trainer(deterministic=...)``:

    default        "auto": on CUDA, cuDNN's deterministic algorithms and a fixed cuBLAS workspace
    off            False (zoo train --no-deterministic): the libraries' own choices
    deterministic  True (zoo train --deterministic): deterministic algorithms only

    python bench/resume_check.py --device cuda --data-dir DATA [--modes MODE[,MODE...]] [--epochs N]
                                 [--rerun] [--recipe vae-conv-mnist]

Prints one line per mode: ``resume on cuda:0 (default): bit-identical (straight run: ... s/epoch)``
or how many tensors differ and by how much at most. On CUDA run each mode in a process of its own:
torch reads the cuBLAS workspace setting once per process. Exit status 0 either way (it measures;
the tests assert).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from zoo.checkpoint import load_checkpoint
from zoo.trainer import Trainer


def compare(a: dict, b: dict, prefix: str = "") -> list[tuple[str, float]]:
    """(name, largest absolute difference) of every tensor that differs between two state trees."""
    found: list[tuple[str, float]] = []
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return [(prefix, float("inf"))]
        if not torch.equal(a, b):
            diff = (a.double() - b.double()).abs().max().item() if a.is_floating_point() else float("inf")
            found.append((prefix, diff))
    elif isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                found.append((f"{prefix}.{key}", float("inf")))
            else:
                found += compare(a[key], b[key], f"{prefix}.{key}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [(prefix, float("inf"))]
        for i, (x, y) in enumerate(zip(a, b)):
            found += compare(x, y, f"{prefix}[{i}]")
    return found


MODES = {"default": "auto", "off": False, "deterministic": True}


def check(
    recipe: str,
    device: str,
    data_dir: str | None,
    folder: Path,
    overrides: dict,
    deterministic: bool | str = "auto",
    epochs: int = 2,
    rerun: bool = False,
) -> tuple[str, list, list[float], list | None]:
    """(device, tensors differing after the resume, the straight run's seconds per epoch, tensors
    differing between two straight runs or None without ``rerun``)."""
    common = dict(device=device, data_dir=data_dir, progress=False, seed=0, deterministic=deterministic)
    straight = Trainer(recipe, overrides={**overrides, "epochs": epochs}, out=folder / "straight", **common)
    history = straight.fit()
    Trainer(recipe, overrides={**overrides, "epochs": 1}, out=folder / "split", **common).fit()
    Trainer.resume(folder / "split", epochs=epochs, progress=False).fit()
    names = ["straight", "split"]
    if rerun:
        Trainer(recipe, overrides={**overrides, "epochs": epochs}, out=folder / "again", **common).fit()
        names.append("again")
    states = [load_checkpoint(folder / name / "checkpoints" / "last.pt") for name in names]
    states = [{"model": state["model"], "optimizer": state["optimizer"]} for state in states]
    again = compare(states[0], states[2]) if rerun else None
    return str(straight.device), compare(states[0], states[1]), [row["epoch_seconds"] for row in history], again


def describe(differ: list) -> str:
    if not differ:
        return "bit-identical"
    worst = max(differ, key=lambda item: item[1])
    return f"{len(differ)} tensor(s) differ; largest difference {worst[1]:.3g} in {worst[0]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="vae-conv-mnist")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--deterministic", action="store_true", help="the same as --modes default,deterministic")
    parser.add_argument(
        "--modes",
        default=None,
        metavar="MODE[,MODE...]",
        help="default, off and/or deterministic (default: default). On CUDA run each mode in a "
        "process of its own: torch reads CUBLAS_WORKSPACE_CONFIG once per process",
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the straight run (at least 2; default 2)")
    parser.add_argument("--rerun", action="store_true", help="also compare two straight runs")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe overrides, as 'zoo train --set' (e.g. a smaller data set for a test)",
    )
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (got {args.epochs})")
    overrides = dict(item.split("=", 1) for item in args.set)
    if args.modes is not None:
        names = [m.strip() for m in args.modes.split(",") if m.strip()]
        if not names or set(names) - set(MODES):
            parser.error(f"--modes takes default, off and/or deterministic (got {args.modes!r})")
    else:
        names = ["default", "deterministic"] if args.deterministic else ["default"]
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            device, differ, seconds, again = check(
                args.recipe, args.device, args.data_dir, Path(tmp), overrides, MODES[name], args.epochs, args.rerun
            )
        times = f" (straight run: {', '.join(f'{s:.2f}' for s in seconds)} s/epoch)"
        rerun = f"; rerun: {describe(again)}" if again is not None else ""
        print(f"resume on {device} ({name}): {describe(differ)}{times}{rerun}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
