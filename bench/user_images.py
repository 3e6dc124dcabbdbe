"""How long zoo takes to read a folder of many small image files as a data set.

    python bench/user_images.py --count 100000 --size 8 --classes 10

Writes COUNT random grey PNGs of SIZE x SIZE into CLASSES class folders (in a temporary folder,
or --folder), then times, each in this process with a fresh cache (a temporary XDG_CACHE_HOME):
the first read (listing, headers, decoding by worker processes into the cache), a second read
(listing only: a cache hit) and loading the training split.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402


def write_folder(folder: Path, count: int, size: int, classes: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (folder / f"class-{c}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"class-{i % classes}" / f"{i:07d}.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--folder", help="write the images here (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.folder) if args.folder else Path(scratch) / "images"
        os.environ["XDG_CACHE_HOME"] = str(Path(scratch) / "cache")
        started = time.perf_counter()
        if not folder.exists():
            write_folder(folder, args.count, args.size, args.classes)
        wrote = time.perf_counter() - started

        import zoo
        from zoo import user_data

        started = time.perf_counter()
        info = zoo.dataset_from_path(folder)
        first = time.perf_counter() - started
        user_data._READ.clear()  # as a new process would: the cache on disk is all it has
        started = time.perf_counter()
        again = zoo.dataset_from_path(folder)
        second = time.perf_counter() - started
        started = time.perf_counter()
        images, _ = again.load("train")
        touched = int(images.sum())  # every byte read from the memory-mapped cache
        loading = time.perf_counter() - started
    print(f"{info.id}: {sum(info.split_sizes.values())} images {info.shape}, splits {info.split_sizes}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; {datetime.date.today()}")
    print(f"write the files       {wrote:8.2f} s")
    print(f"first read (decode)   {first:8.2f} s")
    print(f"second read (cached)  {second:8.2f} s")
    print(f"load train and sum    {loading:8.2f} s  (sum {touched})")


if __name__ == "__main__":
    main()
