"""A folder of image files read as a data set: its files found, labelled by class folder and split by
``train/`` and ``test/``, their headers read, and every image decoded once, by worker processes,
straight into a memory-mapped array in zoo's cache (:mod:`zoo.image_cache`).

A second read of an unchanged folder only lists it: the entry is named by the files' names, sizes
and modification times and the options, and a small manifest beside it keeps what the headers
said (the shape, the classes, the warnings), so nothing is decoded or even opened again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.image_decode import IMAGE_SUFFIXES, Header, decode_rows, read_headers, worker_init
from zoo.user_data import UserImages, check_room, check_splits, test_mask, warn

#: Changes whenever the decoding itself changes, so that older cache entries are not reused.
FORMAT_VERSION = 1
#: Below this many files everything runs in this process; from it on, in worker processes.
POOL_MIN_FILES = 2000
MAX_WORKERS = 8
CHUNK = 256
SPLIT_FOLDERS = ("train", "test")


@dataclass
class Listing:
    """The image files under a folder, in row order (train first), with what the path says of each."""

    root: Path
    files: list[str] = field(default_factory=list)  # absolute paths
    names: list[str] = field(default_factory=list)  # relative to root, '/'-separated
    stats: list[tuple[int, int]] = field(default_factory=list)  # size, modification time (ns)
    labels: list[int] = field(default_factory=list)
    test: list[bool] = field(default_factory=list)
    classes: tuple[str, ...] = ()
    split_by_folder: bool = False
    outside: int = 0  # images beside train/ and test/, not read


def _walk(root: Path) -> tuple[list[tuple[str, str, tuple[int, int]]], list[str]]:
    """Image files (relative name, path, (size, modification time)) and the names of other files
    under ``root``, following links, each folder visited once (so a link loop ends), hidden entries
    (``.name``) left out."""
    images, others, seen, stack = [], [], set(), [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise ZooError(f"cannot read the folder {folder}: {exc.strerror or exc}; check its permissions") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:  # a link to itself, or in a loop of links: not a folder to read
                is_dir = False
            if is_dir:
                stack.append((entry.path, prefix + entry.name + "/"))
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                try:
                    stat = entry.stat()
                    stats = (stat.st_size, stat.st_mtime_ns)
                except OSError:  # a broken link: reported as unreadable
                    stats = (-1, -1)
                images.append((prefix + entry.name, entry.path, stats))
            else:
                others.append(prefix + entry.name)
    return images, others


def list_folder(root: Path) -> Listing:
    images, others = _walk(root)
    if not images:
        found = f"; it holds {len(others)} other files, e.g. {others[0]}" if others else ""
        raise ZooError(
            f"{root} holds no images (PNG, JPEG, BMP, WebP){found}; give a folder with image files in it "
            "(or in class folders)"
        )
    listing = Listing(root)
    present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
    if len(present) == 1:
        missing = next(name for name in SPLIT_FOLDERS if name not in present)
        raise ZooError(
            f"{root} has a {present[0]}/ folder but no {missing}/; add {missing}/ (the two give the split) "
            f"or rename {present[0]}/"
        )
    listing.split_by_folder = bool(present)
    rows = []  # (test, name, path, stats)
    for name, path, stats in images:
        test = False
        if listing.split_by_folder:
            top, _, rest = name.partition("/")
            if top not in SPLIT_FOLDERS or not rest:
                listing.outside += 1
                continue
            test = top == "test"
        rows.append((test, name, path, stats))
    if not rows:
        raise ZooError(
            f"{root}/train and {root}/test hold no images; put the images in them (in class folders or directly)"
        )
    rows.sort()
    class_of = [_class_of(name, listing.split_by_folder) for _, name, _, _ in rows]
    named = sorted({c for c in class_of if c})
    if named and "" in class_of:
        loose = next(row[1] for row, c in zip(rows, class_of) if not c)
        raise ZooError(
            f"{root} holds images both in class folders ({', '.join(named[:5])}) and outside them (e.g. {loose}); "
            "move those into a class folder or remove them"
        )
    listing.classes = tuple(named)
    index = {name: i for i, name in enumerate(named)}
    for (test, name, path, stats), cls in zip(rows, class_of):
        listing.files.append(path)
        listing.names.append(name)
        listing.stats.append(stats)
        listing.labels.append(index.get(cls, 0))
        listing.test.append(test)
    return listing


def _class_of(name: str, split_by_folder: bool) -> str:
    parts = name.split("/")[1:] if split_by_folder else name.split("/")
    return parts[0] if len(parts) > 1 else ""


def _in_workers(function: Callable[[Any], Any], tasks: list[Any], files: int) -> Iterator[Any]:
    """``function`` of each task, in order: in this process for small folders, else in worker
    processes (``concurrent.futures``)."""
    if files < POOL_MIN_FILES or len(tasks) < 2:
        yield from map(function, tasks)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # As torch's DataLoader on Linux: forked workers, which do not import the caller's script again
    # (so one without `if __name__ == "__main__":` works); elsewhere a fresh interpreter each.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and sys.platform.startswith("linux"):
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    pool = ProcessPoolExecutor(min(MAX_WORKERS, cpus, len(tasks)), mp_context=context, initializer=worker_init)
    try:
        yield from pool.map(function, tasks)
    except BrokenProcessPool:
        raise ZooError(
            "the worker processes decoding the images stopped (out of memory, or a script that starts "
            'training outside `if __name__ == "__main__":`); free memory, or guard the script'
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunks(items: list[Any], size: int = CHUNK) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _progress(total: int, what: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="img", unit_scale=True, leave=False, file=sys.stderr, disable=None)


@dataclass
class _Plan:
    rows: list[int]  # indices into the listing of the files whose header could be read
    alpha: list[bool]
    size: tuple[int, int]
    channels: int
    notes: list[str]
    bad: list[tuple[str, str]]  # name, reason


def _stop(name: str, reason: str) -> ZooError:
    return ZooError(
        f"{name} is not a readable image ({reason}); remove or replace it, or skip such files (on_bad='skip')"
    )


def plan(listing: Listing, image_size: list[int] | None, on_bad: str) -> _Plan:
    """Read every header: which files are images, the size and the channel count they become."""
    headers: list[Header | str] = []
    with _progress(len(listing.files), "reading headers") as bar:
        for chunk in _in_workers(read_headers, _chunks(listing.files), len(listing.files)):
            headers.extend(chunk)
            bar.update(len(chunk))
    rows, bad = [], []
    for i, header in enumerate(headers):
        if isinstance(header, str):
            if on_bad == "stop":
                raise _stop(listing.names[i], header)
            bad.append((listing.names[i], header))
        else:
            rows.append(i)
    if not rows:
        bad.sort()
        raise ZooError(
            f"none of the {len(headers)} image files in {listing.root} could be read (e.g. {bad[0][0]}: {bad[0][1]}); "
            "replace them with PNG, JPEG, BMP or WebP images"
        )
    good = [headers[i] for i in rows]
    notes = []
    colour = sum(h.colour for h in good)
    channels = 3 if colour * 2 >= len(good) else 1
    converted = len(good) - colour if channels == 3 else colour
    if converted:
        kinds = ("grey", "colour") if channels == 3 else ("colour", "grey")
        notes.append(
            f"converted {converted} of the {len(good)} images from {kinds[0]} to {kinds[1]} "
            "(the mode of most images; a tie goes to colour)"
        )
    sizes = Counter((h.height, h.width) for h in good)
    if image_size is not None:
        size = (image_size[0], image_size[1])
    else:
        size = max(sizes, key=lambda s: (sizes[s], s[0] * s[1], s))
        if len(sizes) > 1:
            notes.append(
                f"the images have {len(sizes)} sizes; {len(good) - sizes[size]} were resized and centre-cropped to "
                f"{size[0]}x{size[1]}, the most common (set image_size to choose the size)"
            )
    return _Plan(rows, [good_h.alpha for good_h in good], size, channels, notes, bad)


def _decode(listing: Listing, plan: _Plan, out, on_bad: str) -> tuple[Any, list[tuple[str, str]]]:
    """Decode the planned files into ``out`` (one row each), move the readable ones' rows up over
    the others', and return ``[labels, test]`` of those rows and the files that failed."""
    import numpy as np

    check_room(out, f"images of {listing.root}")
    files = [(row, listing.files[i], alpha) for row, (i, alpha) in enumerate(zip(plan.rows, plan.alpha))]
    common = {"channels": plan.channels, "size": list(plan.size)}
    pooled = len(files) >= POOL_MIN_FILES
    tasks = [
        {**common, "files": chunk, **({"array": out.filename} if pooled else {"out": out})} for chunk in _chunks(files)
    ]
    failed: dict[int, str] = {}
    with _progress(len(files), "decoding") as bar:
        for task, failures in zip(tasks, _in_workers(decode_rows, tasks, len(files))):
            for row, reason in failures:
                if on_bad == "stop":
                    raise _stop(listing.names[plan.rows[row]], reason)
                failed[row] = reason
            bar.update(len(task["files"]))
    kept = [row for row in range(len(files)) if row not in failed]
    for new, old in enumerate(kept):
        if new != old:
            out[new] = out[old]
    labels = np.array([listing.labels[plan.rows[row]] for row in kept], dtype=np.int64)
    test = np.array([listing.test[plan.rows[row]] for row in kept], dtype=np.int64)
    return np.stack([labels, test]), [(listing.names[plan.rows[row]], failed[row]) for row in sorted(failed)]


def _key(listing: Listing, options: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256()
    for name, (size, mtime), label, test in zip(listing.names, listing.stats, listing.labels, listing.test):
        digest.update(f"{name}\0{size}\0{mtime}\0{label}\0{int(test)}\n".encode())
    return {
        "kind": "folder",
        "version": FORMAT_VERSION,
        "root": str(listing.root),
        "files": digest.hexdigest(),
        **options,
    }


def _manifest_path(key: dict[str, Any]) -> Path:
    from zoo.image_cache import entry_dir, entry_key

    return entry_dir() / f"{entry_key(key)}.folder.json"


def _read_manifest(key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        manifest = json.loads(_manifest_path(key).read_text())
        return manifest if isinstance(manifest, dict) and len(manifest.get("shape", ())) == 4 else None
    except (OSError, ValueError):
        return None


def _write_manifest(key: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Best effort: without a manifest the next read only reads the headers again."""
    path = _manifest_path(key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def _skipped_note(bad: Iterable[tuple[str, str]], total: int) -> list[str]:
    bad = sorted(bad)
    if not bad:
        return []
    name, reason = bad[0]
    return [f"skipped {len(bad)} of {total} image files that could not be read (e.g. {name}: {reason})"]


def read_folder(
    root: Path, *, image_size: list[int] | None, test_fraction: float, split_seed: int, on_bad: str
) -> UserImages:
    """The images under ``root``, decoded into the cache on the first read (see the module's doc)."""
    from zoo.image_cache import decoded

    listing = list_folder(root)
    if not listing.split_by_folder:
        listing.test = [bool(t) for t in test_mask(listing.names, test_fraction, split_seed, str(root))]
        order = sorted(range(len(listing.files)), key=lambda i: (listing.test[i], listing.names[i]))
        for attribute in ("files", "names", "stats", "labels", "test"):
            values = getattr(listing, attribute)
            setattr(listing, attribute, [values[i] for i in order])
    options = {"image_size": image_size, "on_bad": on_bad}
    if not listing.split_by_folder:
        options.update(test_fraction=test_fraction, split_seed=split_seed)
    key = _key(listing, options)
    manifest = _read_manifest(key)
    planned: list[_Plan] = []
    outcome: dict[str, Any] = {}

    def get_plan() -> _Plan:
        if not planned:
            planned.append(plan(listing, image_size, on_bad))
        return planned[0]

    def fill(out):
        extra, failed = _decode(listing, get_plan(), out, on_bad)
        outcome["failed"] = failed
        return extra

    shape = manifest["shape"] if manifest else [len(get_plan().rows), get_plan().channels, *get_plan().size]
    images, extra = decoded(key, tuple(shape), fill, f"images of {root}")
    if manifest is None or "failed" in outcome:
        bad = [*get_plan().bad, *outcome.get("failed", [])]
        notes = [*get_plan().notes, *_skipped_note(bad, len(listing.files))]
        if listing.outside:
            notes.append(f"left out {listing.outside} images outside {root}/train and {root}/test")
        manifest = {"shape": list(shape), "notes": notes}
        _write_manifest(key, manifest)
    for note in manifest.get("notes", []):
        warn(note)
    labels, test = extra[0], extra[1]
    data = UserImages(
        root.name or str(root),
        images[: len(labels)],
        labels,
        int((test == 0).sum()),
        listing.classes,
        max(1, len(listing.classes)),
    )
    return check_splits(data, str(root))
