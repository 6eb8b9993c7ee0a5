"""Give freed heap memory back to the system (glibc's ``malloc_trim``).

API::

    release_free_memory()     # no-op where the C library has no malloc_trim
    arrow_on_system_heap()    # Arrow's buffers from malloc, once per process
    map_large_blocks()        # blocks of 1 MiB and more always mmapped, so given back when freed

Why: a chunk's column arrays (~0.6 MB each) come from the malloc heap once
glibc's adaptive mmap threshold has risen past their size; freed after the
join, their pages stay in the process between objects that live on, and the
frame's own arrays (mmapped, larger) cannot reuse them. ``malloc_trim``
releases every whole free page of the heap, not only its top.

Arrow's default pool (mimalloc in the wheels) keeps the pages of a chunk's
freed intermediate buffers, out of ``malloc_trim``'s reach: with it, loading
a 256 MiB dns.log ended at 670 MB of RSS for a 395 MB frame, 569 MB with
Arrow on malloc (bench/reader_memory.py). So the reader moves Arrow to the
system allocator, unless the user chose a pool (``ARROW_DEFAULT_MEMORY_POOL``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc_name = ctypes.util.find_library("c")
_trim = getattr(ctypes.CDLL(_libc_name), "malloc_trim", None) if _libc_name else None


def release_free_memory() -> None:
    if _trim is not None:
        _trim(0)


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_mallopt = getattr(ctypes.CDLL(_libc_name), "mallopt", None) if _libc_name else None


def map_large_blocks(threshold: int = 1 << 20) -> None:
    """Serve every block of ``threshold`` bytes and more with its own mapping, for the rest of
    the process. Setting it stops glibc's adaptive threshold, which otherwise rises to the
    largest block freed so far: a reader that frees many big temporary arrays then has them
    from the heap, where their pages outlive them between smaller objects (5 % of peak RSS
    for ``analyze`` of a 512 MiB dns.log)."""
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, threshold)


def arrow_on_system_heap() -> None:
    """Make malloc Arrow's default pool (the process's, as Arrow has one)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        import pyarrow as pa
    except ImportError:  # nothing of Arrow to place
        return
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
