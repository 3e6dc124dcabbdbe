"""Each CPU speed lever of the zoo, switched off (or on) alone, against the defaults, on the machine at hand.

    python bench/cpu_levers.py --data-dir ../shared/data [--rounds 3] [--only NAME ...]

For a new CPU: which of the levers chosen on another one still win here. Training rows run
``zoo train vae-conv-mnist --epochs 1 --no-progress`` (the user's command, in a process of its
own) and read the epoch's ``epoch_seconds``; IW rows time ``zoo.estimators.importance_weighted``
(200 test images, K=500, random weights) in a process of their own. Rows alternate with their
baseline round by round (the machine may be shared); the table gives each row's mean seconds and
the baseline's mean over the same rounds divided by it (> 1: faster than the defaults).

Training levers:
  defaults              what ``zoo train`` does
  no-keep-freed-memory  ``ZOO_KEEP_FREED_MEMORY=0``: glibc's own mmap/trim thresholds (zoo/allocator.py)
  no-plugin-fast-paths  the reference plugin's two single-channel passes computed by oneDNN as written
  threads-1             ``--threads 1``
  bf16                  ``--precision bf16`` (fast only with AVX-512 BF16 or AMX)
  compile               ``--compile`` (its compilation is inside the epoch's time)
IW levers (baseline: the defaults, decode batch 1024 on the CPU):
  iw-no-keep-freed-memory, iw-no-plugin-fast-paths, iw-decode-256, iw-decode-4096
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model

TRAIN = {
    "no-keep-freed-memory": ([], {"ZOO_KEEP_FREED_MEMORY": "0"}, False),
    "no-plugin-fast-paths": ([], {}, True),
    "threads-1": (["--threads", "1"], {}, False),
    "bf16": (["--precision", "bf16"], {}, False),
    "compile": (["--compile"], {}, False),
}
IW = {
    "iw-no-keep-freed-memory": (None, {"ZOO_KEEP_FREED_MEMORY": "0"}, False),
    "iw-no-plugin-fast-paths": (None, {}, True),
    "iw-decode-256": (256, {}, False),
    "iw-decode-4096": (4096, {}, False),
}


def _without_fast_paths() -> None:
    from zoo_aevb import components

    components._cpu_fast_path = lambda *args: False


def train_worker(args) -> None:
    """``zoo train`` in this process (optionally without the plugin's fast paths)."""
    if args.no_fast:
        _without_fast_paths()
    from zoo.cli import main

    try:
        main(args.rest)
    except SystemExit as exc:
        if exc.code:
            raise


def iw_worker(args) -> None:
    import torch

    import zoo
    from zoo.estimators import importance_weighted, prepare_for_inference
    from zoo.plugins import get_registry

    if args.no_fast:
        _without_fast_paths()
    torch.manual_seed(0)
    model = prepare_for_inference(zoo.create("vae-conv-mnist"))
    test, _ = get_registry().get("dataset", "mnist").load().load("test", args.data_dir, download=False)
    x = test[:200].float().div(255)
    importance_weighted(model, [x[:20]], 50, decode_batch=args.decode)  # warm-up
    start = time.perf_counter()
    importance_weighted(model, [x[i : i + 100] for i in range(0, 200, 100)], 500, decode_batch=args.decode)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def run_train(name: str, data_dir: str, scratch: Path) -> float:
    extra, env, no_fast = TRAIN.get(name, ([], {}, False))
    out = scratch / f"{name}-{time.monotonic_ns()}"
    command = [
        sys.executable,
        __file__,
        "--train-worker",
        *(["--no-fast"] if no_fast else []),
        "--",
        "train",
        "vae-conv-mnist",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--data-dir",
        data_dir,
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{name}: zoo train failed:\n{done.stderr[-2000:]}")
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    return float(row["epoch_seconds"])


def run_iw(name: str, data_dir: str) -> float:
    decode, env, no_fast = IW.get(name, (None, {}, False))
    command = [
        sys.executable,
        __file__,
        "--iw-worker",
        "--data-dir",
        data_dir,
        *(["--decode", str(decode)] if decode else []),
        *(["--no-fast"] if no_fast else []),
    ]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{name}: the IW worker failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("ZOO_DATA"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", nargs="*", default=None, help="levers to measure (default: all)")
    p.add_argument("--json-out", default=None)
    p.add_argument("--train-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--iw-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-fast", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--decode", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.train_worker:
        train_worker(args)
        return 0
    if args.iw_worker:
        iw_worker(args)
        return 0
    if not args.data_dir:
        p.error("--data-dir (or ZOO_DATA) is needed: the folder holding MNIST/raw")
    names = args.only or [*TRAIN, *IW]
    unknown = [n for n in names if n not in TRAIN and n not in IW]
    if unknown:
        p.error(f"unknown lever(s) {', '.join(unknown)}; choose from {', '.join([*TRAIN, *IW])}")
    import torch

    print(
        f"torch {torch.__version__}, {cpu_model()}, {os.cpu_count()} CPUs; {args.rounds} rounds, "
        "each row alternating with its baseline"
    )
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for r in range(1, args.rounds + 1):
            for name in names:
                train = name in TRAIN
                base = "defaults" if train else "iw-defaults"
                run = (
                    (lambda n: run_train(n, args.data_dir, Path(scratch)))
                    if train
                    else (lambda n: run_iw(n, args.data_dir))
                )
                times.setdefault(f"{name}|base", []).append(run(base))
                times.setdefault(name, []).append(run(name))
                print(
                    f"  round {r}: {name:24s} {times[name][-1]:7.2f} s   baseline {times[f'{name}|base'][-1]:7.2f} s",
                    flush=True,
                )
    print()
    print("| lever | what is timed | mean s | baseline mean s (same rounds) | x vs defaults |")
    print("|---|---|---:|---:|---:|")
    rows = []
    for name in names:
        mean = sum(times[name]) / len(times[name])
        base = sum(times[f"{name}|base"]) / len(times[f"{name}|base"])
        what = "epoch (1, training only)" if name in TRAIN else "IW, 200 images x K=500"
        rows.append({"lever": name, "seconds": times[name], "baseline": times[f"{name}|base"], "ratio": base / mean})
        print(f"| {name} | {what} | {mean:.2f} | {base:.2f} | {base / mean:.2f} |")
    print(
        "\nx vs defaults < 1: the defaults are faster, so the lever switched off here (or on, for "
        "threads-1, bf16, compile) costs time."
    )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cpu": cpu_model(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
