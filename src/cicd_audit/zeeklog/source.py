"""A log file's bytes, plain or gzip, with the reader's limits enforced.

API::

    read_bytes(path, limits=None) -> bytes    # LogLimitError, LogFormatError (bad gzip)
    line_chunks(path, limits=None, chunk_bytes=CHUNK_BYTES) -> iterator of bytes
        # the same bytes cut at line ends, about chunk_bytes each
    drain(chunks)                             # read the rest: a later limit error wins
    log_name_from_path(path) -> str           # "dns.log.gz" -> "dns"
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .header import LogFormatError
from .limits import DEFAULT_LIMITS, CorruptGzip, ReadLimits, iter_bounded, read_bounded

#: Text parsed at a time. The parse of a chunk holds a few times its size in
#: Python objects before they become typed columns; 16 MiB keeps that under
#: ~100 MB whatever the file's size.
CHUNK_BYTES = 16 << 20


def read_bytes(path, limits: ReadLimits | None = None) -> bytes:
    try:
        return read_bounded(path, limits or DEFAULT_LIMITS)
    except CorruptGzip as e:
        raise LogFormatError(os.fspath(path), None, f"bad gzip data ({e})") from None


def line_chunks(path, limits: ReadLimits | None = None, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The file's bytes in chunks that each end at a newline (the last one
    may not), of about ``chunk_bytes`` (a chunk holds at least one line).
    Limits are checked window by window before a chunk is handed out."""
    carry = b""
    try:
        for window in iter_bounded(path, limits or DEFAULT_LIMITS, chunk_bytes):
            buf = carry + window if carry else window
            pos = 0
            while len(buf) - pos >= chunk_bytes:
                cut = buf.rfind(b"\n", pos, pos + chunk_bytes)
                if cut < 0:  # one line longer than a chunk: take it whole
                    cut = buf.find(b"\n", pos + chunk_bytes)
                    if cut < 0:
                        break
                yield buf[pos:cut + 1]
                pos = cut + 1
            carry = buf[pos:]
    except CorruptGzip as e:
        raise LogFormatError(os.fspath(path), None, f"bad gzip data ({e})") from None
    if carry:
        yield carry


def drain(chunks: Iterator[bytes]) -> None:
    """Read the rest of ``chunks`` without parsing it. Called before raising
    a format error: a limit error further on says why the file cannot be
    read at all, as it did when the whole file was checked before parsing."""
    for _ in chunks:
        pass


def log_name_from_path(path) -> str:
    base = os.path.basename(os.fspath(path))
    return base.split(".", 1)[0]
