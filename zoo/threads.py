"""How many CPU threads torch uses for a run: by default, the cores that no other process keeps busy.

Why: torch's OpenMP threads wait for each other at the end of every parallel region. When
another process holds one of the cores, the thread sharing that core is descheduled for whole
time slices and the others wait for it, so on a 2-core machine two threads beside one busy
process train about 4x slower than idle, while one thread is only about 1.3x slower (measured
in docs/benchmarks.md). Asking the OpenMP runtime to sleep instead of spin
(``OMP_WAIT_POLICY=PASSIVE``) helps under load but costs about a quarter of the idle speed, so
the choice is made on the thread count instead, once, when a run starts.

The count is chosen once and recorded in the run's ``config.json`` (``resolved.threads``); a
resumed run keeps it, so a run and its resumption compute alike. ``--threads N`` (or
``OMP_NUM_THREADS``) fixes it.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator

from zoo.errors import ZooValueError, is_count

#: Seconds over which the other processes' CPU use is read before a run starts.
WINDOW = 0.15


def _cpu_ticks(path: str = "/proc/stat") -> tuple[int, int] | None:
    """(all ticks, ticks free for this process) over every CPU since boot, from /proc/stat (None where
    there is none). Free: idle, waiting for I/O, or running niced processes, which give way to a
    process of normal priority (measured: two threads beside three ``nice -n 19`` jobs trained at
    their idle speed, one thread 1.1-1.5x slower)."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(values), values[1] + values[3] + values[4]


def busy_cores(window: float = WINDOW) -> float | None:
    """How many cores other processes of normal priority keep busy, measured over ``window`` seconds
    while this one sleeps; None where it cannot be read (no /proc/stat)."""
    before = _cpu_ticks()
    if before is None:
        return None
    time.sleep(window)
    after = _cpu_ticks()
    if after is None or after[0] <= before[0]:
        return None
    total, idle = after[0] - before[0], after[1] - before[1]
    return (total - idle) / total * (os.cpu_count() or 1)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def max_threads() -> int:
    """The most CPU threads a run may ask for: 4 per core of the machine. Far more than that (tens
    of thousands) exhausts OpenMP's thread stacks and kills the process (a segfault)."""
    return 4 * (os.cpu_count() or 1)


def thread_count_problem(value: object) -> str | None:
    """Why a ``--threads`` value cannot be used (None when it can): it must be None (choose) or a
    whole number from 1 to :func:`max_threads`. The one rule of ``zoo train``, ``zoo eval`` and
    :class:`zoo.plan.RunSettings`; this module imports torch only when a run starts, so the
    command line checks it first."""
    if value is None:
        return None
    if not is_count(value):
        return f"--threads must be a whole number of CPU threads, at least 1 (got {value!r})"
    if value > max_threads():
        return (
            f"--threads must be a whole number of CPU threads from 1 to {max_threads()}, "
            f"4 per core of this machine (got {value!r})"
        )
    return None


def check_thread_count(value: object) -> None:
    """:func:`thread_count_problem` as a :class:`zoo.errors.ZooValueError`."""
    problem = thread_count_problem(value)
    if problem:
        raise ZooValueError(problem)


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """The thread count for a run on the CPU, and why.

    ``requested`` (``--threads``) wins; then ``OMP_NUM_THREADS``; otherwise torch's own count,
    lowered to the cores left idle by other processes (at least one).
    """
    import torch

    if requested is not None:
        return requested, "--threads"
    if os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    default = torch.get_num_threads()
    busy = busy_cores()
    if busy is None:
        return default, "torch's default"
    free = max(1, math.floor(usable_cores() - busy + 0.5))
    if free >= default:
        return default, f"torch's default; {busy:.1f} cores busy with other work"
    return free, f"{busy:.1f} of {usable_cores()} cores busy with other work"


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    if count != previous:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
