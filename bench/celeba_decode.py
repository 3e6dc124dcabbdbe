"""How fast ``celeba64`` decodes its JPEGs on first use, and how fast a later load reads the cache.

Writes synthetic aligned-size photographs (178x218 JPEGs, smooth colour ramps with noise) and a
partition file into a temporary CelebA folder, then loads the train split through
``zoo.celeba.load_celeba`` with each number of worker processes, each time into an empty cache
(the first load: decode, crop, resize, write the memory-mapped array), and once more from the
cache. Prints one markdown row per worker count: the best of ``--rounds``.

    python bench/celeba_decode.py --images 3000 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402


def write_images(root: Path, count: int) -> float:
    """``count`` synthetic images in ``root/celeba``; returns their mean size in bytes."""
    import numpy as np
    from PIL import Image

    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:218, 0:178]
    rng = np.random.default_rng(0)
    lines, total = [], 0
    for i in range(count):
        ramp = np.stack([(x * (i % 7 + 1)) % 256, (y * 3 + i) % 256, ((x + y) * 2) % 256], axis=-1)
        pixels = np.clip(ramp + rng.normal(0, 6, ramp.shape), 0, 255).astype(np.uint8)
        path = folder / f"{i + 1:06d}.jpg"
        Image.fromarray(pixels).save(path, quality=85)
        total += path.stat().st_size
        lines.append(f"{path.name} 0")
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return total / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="synthetic images to decode (default 3000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to try (default 1 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per worker count; the best is shown")
    args = parser.parse_args(argv)
    if args.images < 1 or args.rounds < 1 or min(args.workers) < 1:
        parser.error("--images, --rounds and --workers must be at least 1")

    from zoo.celeba import _decode, load_celeba

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        mean_bytes = write_images(root, args.images)
        _decode(next((root / "celeba" / "img_align_celeba").iterdir()))  # imports, before any timing
        print(f"{args.images} synthetic 178x218 JPEGs of {mean_bytes / 1000:.1f} kB on average; {cpu_model()}")
        print("| workers | first load (decode) | images/s | later load (cache) |")
        print("|---|---|---|---|")
        for workers in args.workers:
            first, later = [], []
            for r in range(args.rounds):
                os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / f"cache-{workers}-{r}")
                start = time.perf_counter()
                images, _ = load_celeba(root, "train", False, workers=workers)
                first.append(time.perf_counter() - start)
                assert images.shape == (args.images, 3, 64, 64)
                start = time.perf_counter()
                load_celeba(root, "train", False, workers=workers)
                later.append(time.perf_counter() - start)
            best = min(first)
            print(f"| {workers} | {best:.2f} s | {args.images / best:,.0f} | {min(later) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
