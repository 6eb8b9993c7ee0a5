"""Give freed heap memory back to the system (glibc's ``malloc_trim``).

API::

    release_free_memory()     # no-op where the C library has no malloc_trim

Why: a chunk's column arrays (~0.6 MB each) come from the malloc heap once
glibc's adaptive mmap threshold has risen past their size; freed after the
join, their pages stay in the process between objects that live on, and the
frame's own arrays (mmapped, larger) cannot reuse them. ``malloc_trim``
releases every whole free page of the heap, not only its top.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_libc_name = ctypes.util.find_library("c")
_trim = getattr(ctypes.CDLL(_libc_name), "malloc_trim", None) if _libc_name else None


def release_free_memory() -> None:
    if _trim is not None:
        _trim(0)
