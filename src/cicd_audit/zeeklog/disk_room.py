"""Disk space held in reserve past a file's end, so a log's last lines still fit on a full disk.

API::

    keep_room(fd, offset, length, release=False) -> int   # 0 or the errno
    CLOSE_ROOM                                             # bytes kept for a "#close" line
    DISK_FULL                                              # the errnos that mean "no space"
"""

from __future__ import annotations

import errno
import functools

# fallocate(2) modes (linux/falloc.h): allocate or free blocks without changing the file's size.
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
# Room for "#close\t2026-12-05-07-30-46\n" that rows never use (see LogWriter's reserve).
CLOSE_ROOM = 64
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@functools.lru_cache(maxsize=1)
def _fallocate():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    func = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if func is not None:
        func.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    return func


def keep_room(fd: int, offset: int, length: int, release: bool = False) -> int:
    """Allocate (or, with release, free) the blocks of [offset, offset+length) without changing
    the file's size, so a later write there succeeds on a full disk. Returns 0, or the errno:
    ENOSPC/EDQUOT when the disk is full, EOPNOTSUPP where the file system cannot."""
    func = _fallocate()
    if func is None:
        return errno.EOPNOTSUPP
    if length <= 0:
        return 0
    import ctypes
    mode = _FALLOC_FL_KEEP_SIZE | (_FALLOC_FL_PUNCH_HOLE if release else 0)
    return 0 if func(fd, mode, offset, length) == 0 else ctypes.get_errno()
