"""Keep freed memory for reuse instead of returning it to the kernel at once.

Why: a busy logserver allocates and frees a buffer of about a megabyte
several times per batch (the received frame, the decoded messages, the
encoded segment write). glibc serves blocks that large with a fresh ``mmap``
and gives them back with ``munmap`` on free, so every batch touches new
pages, and each first touch is a page fault: 1,200 of them per 8,600-record
batch here, a quarter of the server's CPU per record (measured: 1.9-2.6 µs
per record in-process without this, 1.3-2.1 µs with it; see BENCHMARKS.md).

Raising ``M_MMAP_THRESHOLD`` makes such blocks come from the heap, and
raising ``M_TRIM_THRESHOLD`` keeps the freed heap top, so the next batch
reuses warm pages (8 MiB was enough for 1 MiB batches, measured; 16 MiB
leaves room for a frame of up to the default 16 MiB cap). ``M_ARENA_MAX``
keeps the number of heaps at two: connection threads allocate under the GIL
anyway, so more arenas buy no parallelism, and each would keep its own free
top. The price is bounded: at most about ``arenas x trim_threshold`` (32 MiB)
of free memory stays mapped after a burst. Setting a threshold also turns
off glibc's dynamic adjustment of it.

Only glibc has ``mallopt`` with these parameters; elsewhere (musl, macOS)
this does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: Blocks below this come from the heap (a frame is at most a few MiB).
MMAP_THRESHOLD = 16 * 2**20
#: Free memory at a heap's top beyond this is returned to the kernel.
TRIM_THRESHOLD = 16 * 2**20
#: Heaps (malloc arenas) for the whole process.
ARENA_MAX = 2


def keep_freed_memory(
    mmap_threshold: int = MMAP_THRESHOLD,
    trim_threshold: int = TRIM_THRESHOLD,
    arena_max: int = ARENA_MAX,
) -> str | None:
    """Set glibc's thresholds for this process (call it early, before threads start);
    None when done, else why not."""
    name = ctypes.util.find_library("c")
    if name is None:
        return "no C library found"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return f"{name} has no mallopt (not glibc)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not mallopt(_M_MMAP_THRESHOLD, mmap_threshold):
        return f"mallopt(M_MMAP_THRESHOLD, {mmap_threshold}) refused"
    if not mallopt(_M_TRIM_THRESHOLD, trim_threshold):
        return f"mallopt(M_TRIM_THRESHOLD, {trim_threshold}) refused"
    if not mallopt(_M_ARENA_MAX, arena_max):
        return f"mallopt(M_ARENA_MAX, {arena_max}) refused"
    return None
