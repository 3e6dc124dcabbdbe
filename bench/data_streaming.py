"""Does streaming keep the device busy, how does the zoo's loader compare with the usual
ImageFolder + DataLoader code, and does streaming stay within a host-memory budget?

    python bench/data_streaming.py --work DIR [--images 10000] [--size 64] [--epochs 2]
                                   [--budget-mib 1024] [--device cpu] [--skip PART,...]

Parts (each prints its own table; ratios are side by side on the same machine, same run):

held-vs-stream
    ``zoo train vae-conv --data DIR/images`` (a folder of N colour PNGs of SIZE x SIZE) twice
    each, alternating, with ``--data-placement device`` and ``--data-placement stream``; the
    zoo's own ``epoch_seconds`` of the epochs after the first. Target: stream >= 0.95x held on a
    CPU, >= 0.90x on a GPU.
zoo-vs-imagefolder
    The usual user code on the same folder: torchvision ``ImageFolder`` with ``ToTensor``, a
    shuffled ``DataLoader`` (batch 100, 4 workers), the same model and objective built by zoo,
    Adam lr 1e-3; seconds per epoch after the first, against the zoo's held run above.
    Target: the zoo >= 2x.

Each figure is the fastest epoch after the first of ``--repeats`` runs (alternating held and
streamed), the least disturbed one on a machine shared with other work; the median is printed beside it.
memory
    A data set 4x larger than ``--budget-mib`` decoded into zoo's cache, streamed for one epoch
    (uint8 batches of 100 gathered by the loader's workers, turned into floats on the device).
    Peak host memory is the sum of the proportional set sizes (PSS, so pages shared between the
    main process and its workers count once) of the process and its workers, sampled every 20 ms,
    above what the process held before the data set was opened. Target: below the budget.

Figures depend on the machine: the CPU model is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from machine import cpu_model

HERE = Path(__file__).resolve().parent


def write_folder(root: Path, count: int, size: int) -> Path:
    """``count`` colour PNGs (smooth random blobs, so PNG does not compress them to nothing)."""
    from PIL import Image

    folder = root / f"images-{count}-{size}"
    done = folder / ".complete"
    if done.exists():
        return folder
    (folder / "all").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        cx, cy, r = rng.uniform(0.2, 0.8, 3)
        colour = rng.uniform(0, 255, 3)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2 < (r / 2) ** 2)[..., None]
        noise = rng.normal(0, 12, (size, size, 3))
        image = np.clip(mask * colour + (1 - mask) * 30 + noise, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / "all" / f"{i:06d}.png")
    done.write_text("")
    return folder


def zoo_epochs(folder: Path, out: Path, placement: str, epochs: int, device: str, model: str) -> list[float]:
    """Seconds of each epoch after the first, as the zoo logged them."""
    command = [
        *(sys.executable, "-m", "zoo", "train", model, "--data", str(folder), "--epochs", str(epochs)),
        *("--data-placement", placement, "--device", device, "--out", str(out), "--overwrite", "--no-progress"),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [row["epoch_seconds"] for row in rows[1:]]


def imagefolder_epochs(folder: Path, epochs: int, device: str, model_id: str, size: int) -> list[float]:
    """The usual user code: ImageFolder + DataLoader(4 workers) training the same model."""
    import torchvision
    from torchvision import transforms

    import zoo
    from zoo.objectives import TrainingStep

    recipe = zoo.get_recipe(model_id)
    model = zoo.from_recipe(recipe, SimpleNamespace(shape=(3, size, size))).to(device)  # the model zoo trains
    step = TrainingStep(model, zoo.composition.build_objective(recipe.objective, recipe.objective_options, model)[0])
    optimizer = torch.optim.Adam(step.parameters(), lr=1e-3)
    data = torchvision.datasets.ImageFolder(str(folder), transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(data, batch_size=100, shuffle=True, num_workers=4, drop_last=True)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, _ in loader:
            loss = step(x.to(device, non_blocking=True)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def pss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
        return found
    except OSError:
        return []


def memory_part(work: Path, budget_mib: int, size: int, device: str) -> dict:
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    from zoo.distributed import Dist
    from zoo.image_cache import decoded
    from zoo.streaming import StreamData

    item = 3 * size * size
    count = 4 * budget_mib * 2**20 // item
    chunk = 4096

    def fill(out):
        rng = np.random.default_rng(1)
        for start in range(0, count, chunk):
            out[start : start + chunk] = rng.integers(0, 256, size=out[start : start + chunk].shape, dtype=np.uint8)

    me = os.getpid()
    before = pss_bytes([me])
    images, _ = decoded({"bench": "memory", "count": count, "size": size}, (count, 3, size, size), fill, "bench")
    data = StreamData(images, torch.device(device), False, Dist())
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], pss_bytes([me, *children(me)]) - before)
            time.sleep(0.02)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start, seen, total = time.perf_counter(), 0, 0.0
    for x in data.train_batches(100, 0, 1):
        total += float(x[:, :, 0, 0].sum())  # touch every batch
        seen += len(x)
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    return {
        "data_mib": images.numel() / 2**20,
        "budget_mib": budget_mib,
        "peak_mib": peak[0] / 2**20,
        "images": seen,
        "images_per_s": seen / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="a scratch folder (images, runs, cache)")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--budget-mib", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="vae-conv")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_CACHE_HOME", str(args.work / "cache"))
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; device {args.device}")
    results: dict = {}
    if not {"held-vs-stream", "zoo-vs-imagefolder"} <= skip:
        folder = write_folder(args.work, args.images, args.size)
        held, streamed = [], []
        for _ in range(args.repeats):
            held += zoo_epochs(folder, args.work / "held", "device", args.epochs, args.device, args.model)
            if "held-vs-stream" not in skip:
                streamed += zoo_epochs(folder, args.work / "stream", "stream", args.epochs, args.device, args.model)
        # The fastest epoch is the least disturbed one on a shared machine; the median is printed too.
        results["held_s"], results["held_median_s"] = min(held), statistics.median(held)
        print(
            f"zoo, data held on {args.device}: {min(held):.2f} s/epoch (fastest; median {statistics.median(held):.2f})"
        )
        if streamed:
            results["stream_s"], results["stream_median_s"] = min(streamed), statistics.median(streamed)
            ratio = results["held_s"] / results["stream_s"]
            print(
                f"zoo, data streamed:   {min(streamed):.2f} s/epoch (fastest; median "
                f"{statistics.median(streamed):.2f}); rate {ratio:.3f}x held"
            )
        if "zoo-vs-imagefolder" not in skip:
            usual = []
            for _ in range(args.repeats):
                usual += imagefolder_epochs(folder, args.epochs, args.device, args.model, args.size)
            results["imagefolder_s"], results["imagefolder_median_s"] = min(usual), statistics.median(usual)
            print(
                f"ImageFolder + DataLoader(4 workers): {min(usual):.2f} s/epoch (fastest; median "
                f"{statistics.median(usual):.2f} of {len(usual)}); zoo {min(usual) / results['held_s']:.2f}x faster"
            )
    if "memory" not in skip:
        mem = memory_part(args.work, args.budget_mib, args.size, args.device)
        results["memory"] = mem
        print(
            f"streaming {mem['data_mib']:,.0f} MiB with a {mem['budget_mib']} MiB budget: peak {mem['peak_mib']:,.0f} MiB "
            f"above the start ({mem['peak_mib'] / mem['budget_mib']:.2f}x the budget), {mem['images_per_s']:,.0f} images/s"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
