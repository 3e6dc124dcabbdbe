"""Keep freed host memory inside the process while training or evaluating on the CPU (glibc only).

Why: a training step of ``vae-conv-mnist`` allocates and frees activations of about a megabyte
each. With glibc's defaults, blocks that large are mapped fresh from the kernel and handed back
when freed (``mmap``/``munmap``, and trimming the heap top), so every step touches new pages:
about 200-1,000 page faults a step, 1.2x the step time on a 2-core KVM machine
(``docs/benchmarks.md``). Raising glibc's mmap and trim thresholds lets the allocator reuse the
memory it already has: no page faults after the first steps. Results are unchanged (the tensor
allocator's alignment is its own), only where the memory comes from.

The setting is process-wide and stays for the life of the process: the process keeps its peak
heap instead of returning it to the system (what CUDA's caching allocator does on a GPU).
Nothing is changed where the user set glibc's malloc tunables (``GLIBC_TUNABLES`` or any
``MALLOC_*`` variable), where another allocator is preloaded, off Linux/glibc, or where
``ZOO_KEEP_FREED_MEMORY`` is 0, false, no or off (any case).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit systems: blocks up to this size come from the heap.
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the top of the heap kept before glibc trims it.
TRIM_THRESHOLD = 2**30

_applied: bool | None = None


def _user_chose() -> str | None:
    """Why the allocator's settings are left alone (None: they can be set)."""
    if os.environ.get("ZOO_KEEP_FREED_MEMORY", "").strip().lower() in ("0", "false", "no", "off"):
        return "ZOO_KEEP_FREED_MEMORY=0"
    for name in os.environ:
        if name == "GLIBC_TUNABLES" or name.startswith("MALLOC_"):
            return f"{name} is set"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return "another allocator is preloaded"
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    return None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are (now or before)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if _user_chose() is None:
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
