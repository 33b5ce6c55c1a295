"""Keep freed memory in the process for reuse instead of returning it to the system at once.

A batch search allocates score and candidate arrays of tens of megabytes; glibc serves allocations above
its mmap threshold with fresh pages and unmaps them on free, so every batch pays page faults again. On
the 2-core VM we measure on, a fresh 30 MB array cost 25–65 ms to fill against 3–4 ms for reused memory
(docs/benchmarks.md). Raising the mmap and trim thresholds keeps such blocks in the heap: peak memory is
unchanged (the same arrays exist at the same time), the heap just is not shrunk after each batch.

Only on glibc; `VFR_MALLOC_TUNING=0` leaves the allocator as it is.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD = 128 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Apply the thresholds once per process; True when they were applied."""
    if os.environ.get("VFR_MALLOC_TUNING", "1").strip() == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
