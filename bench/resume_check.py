"""Is a resumed run bit-identical to an uninterrupted one on this device, with the default settings?

Trains a recipe for 2 epochs straight, and for 1 epoch then resumed to 2 (``Trainer.resume``, as
``zoo train --resume`` does), in this process, and compares the final weights and optimizer state
tensor by tensor. On the CPU the suite checks this on every run; on a GPU it also depends on
cuDNN's choice of algorithms (some add with atomics, in an order that changes from run to run), so
``--deterministic`` repeats the check with the runs trained with ``deterministic=True``
(``zoo train --deterministic``: deterministic algorithms only), and prints both modes' epoch times.

    python bench/resume_check.py --device cuda --data-dir DATA [--deterministic | --modes MODE[,MODE]]
                                 [--recipe vae-conv-mnist]

Prints one line per check: ``resume on cuda:0 (default): bit-identical`` or how many tensors
differ and by how much at most. Exit status 0 either way (it measures; the tests assert).
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


def check(recipe: str, device: str, data_dir: str | None, folder: Path, overrides: dict,
          deterministic: bool = False) -> tuple[str, list, list[float]]:
    """(device, differing tensors, the straight run's seconds per epoch)."""
    common = dict(device=device, data_dir=data_dir, progress=False, seed=0, deterministic=deterministic)
    straight = Trainer(recipe, overrides={**overrides, "epochs": 2}, out=folder / "straight", **common)
    history = straight.fit()
    Trainer(recipe, overrides={**overrides, "epochs": 1}, out=folder / "split", **common).fit()
    Trainer.resume(folder / "split", epochs=2, progress=False).fit()
    a, b = (load_checkpoint(folder / name / "checkpoints" / "last.pt") for name in ("straight", "split"))
    differ = compare({"model": a["model"], "optimizer": a["optimizer"]},
                     {"model": b["model"], "optimizer": b["optimizer"]})
    return str(straight.device), differ, [row["epoch_seconds"] for row in history]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="vae-conv-mnist")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--deterministic", action="store_true",
                        help="also check runs trained with deterministic=True (zoo train --deterministic)")
    parser.add_argument("--modes", default=None, metavar="MODE[,MODE]",
                        help="default and/or deterministic, in that order (instead of --deterministic). On CUDA run "
                             "each mode in a process of its own: torch reads CUBLAS_WORKSPACE_CONFIG, which "
                             "deterministic sets, once per process, at the first matrix product")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe overrides, as 'zoo train --set' (e.g. a smaller data set for a test)")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    if args.modes is not None:
        names = [m.strip() for m in args.modes.split(",") if m.strip()]
        if not names or set(names) - {"default", "deterministic"}:
            parser.error(f"--modes takes default and/or deterministic (got {args.modes!r})")
        modes = [name == "deterministic" for name in names]
    else:
        modes = [False, True] if args.deterministic else [False]
    for deterministic in modes:
        with tempfile.TemporaryDirectory() as tmp:
            device, differ, seconds = check(args.recipe, args.device, args.data_dir, Path(tmp), overrides,
                                            deterministic)
        how = "deterministic" if deterministic else "default"
        times = f" (straight run: {', '.join(f'{s:.2f}' for s in seconds)} s/epoch)"
        if not differ:
            print(f"resume on {device} ({how}): bit-identical{times}")
        else:
            worst = max(differ, key=lambda item: item[1])
            print(f"resume on {device} ({how}): {len(differ)} tensor(s) differ; largest difference "
                  f"{worst[1]:.3g} in {worst[0]}{times}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
