"""Size limits for reading a log: an untrusted job writes what we read.

API::

    ReadLimits(max_line_bytes, max_log_bytes, max_gzip_ratio,
               gzip_ratio_floor_bytes)                       # frozen
    DEFAULT_LIMITS
    read_bounded(path, limits) -> bytes     # plain or gzip, limits checked
    iter_bounded(path, limits) -> iterator of bytes   # the same, window by window
    CorruptGzip(Exception)                  # a gzip file that does not decompress
    LogLimitError(InputError)               # names the file and the limit

Without limits a single 1 GB line took 7.4 GB of memory to parse and a
1 MB gzip bomb 9.5 GB. The checks run while the file is read, in windows of
``_WINDOW`` bytes, so a bomb or an endless line fails after one window, not
after it has been decompressed or split in full.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["CorruptGzip", "DEFAULT_LIMITS", "LogLimitError", "ReadLimits", "iter_bounded", "read_bounded"]

#: Bytes decompressed or checked at a time: small next to any limit below.
_WINDOW = 16 << 20


@dataclass(frozen=True)
class ReadLimits:
    #: A Zeek line holds one connection or one DNS transaction; even a
    #: 30-answer DNS reply with 253-byte names is far below 1 MiB.
    max_line_bytes: int = 1 << 20
    #: Decompressed size of one log file: a runner's day is well under this.
    max_log_bytes: int = 16 << 30
    #: Zeek TSV compresses 10-40x; gzip's ceiling is ~1030x, reached only by
    #: repeated bytes (a bomb).
    max_gzip_ratio: int = 200
    #: Below this decompressed size the ratio is not checked: a tiny, very
    #: repetitive log is harmless.
    gzip_ratio_floor_bytes: int = 64 << 20


DEFAULT_LIMITS = ReadLimits()


class CorruptGzip(Exception):
    """A gzip file that does not decompress (the reader names file and cause)."""


class LogLimitError(InputError):
    """A log over one of the ReadLimits: refused before it fills memory."""

    def __init__(self, filename, limit: str, message: str):
        self.filename = os.fspath(filename)
        self.limit = limit
        super().__init__(f"{self.filename}: {message} (limit {limit}); refusing to load it")


class _LineCheck:
    """Tracks the current line's length across windows."""

    def __init__(self, path, limits: ReadLimits):
        self.path, self.limit = path, limits.max_line_bytes
        self.run = 0  # bytes since the last newline

    def feed(self, chunk: bytes) -> None:
        if self.run + len(chunk) <= self.limit:  # no line here can be too long
            nl = chunk.rfind(b"\n")
            self.run = self.run + len(chunk) if nl < 0 else len(chunk) - nl - 1
            return
        ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
        if len(ends) == 0:
            longest = self.run = self.run + len(chunk)
        else:
            tail = len(chunk) - int(ends[-1]) - 1
            inner = int((np.diff(ends) - 1).max()) if len(ends) > 1 else 0
            longest = max(self.run + int(ends[0]), inner, tail)
            self.run = tail
        if longest > self.limit:
            raise LogLimitError(self.path, f"max_line_bytes={self.limit}", f"a line is longer than {self.limit} bytes")


def iter_bounded(path, limits: ReadLimits = DEFAULT_LIMITS, window: int = _WINDOW) -> Iterator[bytes]:
    """The file's bytes (gunzipped if gzip) in windows of up to ``window``
    bytes, each checked before it is yielded: LogLimitError over a limit,
    CorruptGzip for a gzip file that does not decompress. A reader that
    keeps only a window at a time stays bounded whatever the file's size."""
    p = os.fspath(path)
    lines = _LineCheck(p, limits)
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(2) != b"\x1f\x8b":
            if size > limits.max_log_bytes:
                raise LogLimitError(p, f"max_log_bytes={limits.max_log_bytes}", f"{size} bytes")
            f.seek(0)
            for chunk in iter(lambda: f.read(window), b""):
                lines.feed(chunk)
                yield chunk
            return
        f.seek(0)
        cap = limits.max_log_bytes
        ratio_cap = max(limits.gzip_ratio_floor_bytes, limits.max_gzip_ratio * size)
        total = 0
        g = gzip.GzipFile(fileobj=f)
        while True:
            try:
                chunk = g.read(window)
            except (OSError, EOFError, zlib.error) as e:
                raise CorruptGzip(str(e)) from None
            if not chunk:
                break
            total += len(chunk)
            if total > cap:
                raise LogLimitError(p, f"max_log_bytes={cap}", f"decompresses to more than {cap} bytes")
            if total > ratio_cap:
                raise LogLimitError(
                    p,
                    f"max_gzip_ratio={limits.max_gzip_ratio}",
                    f"{size} compressed bytes decompress to over {total} bytes: a gzip bomb?",
                )
            lines.feed(chunk)
            yield chunk


def read_bounded(path, limits: ReadLimits = DEFAULT_LIMITS) -> bytes:
    """The file's bytes (gunzipped if gzip); LogLimitError over a limit,
    CorruptGzip for a gzip file that does not decompress."""
    p = os.fspath(path)
    with open(p, "rb") as f:
        plain = f.read(2) != b"\x1f\x8b"
    if plain:
        # check window by window first, so a refused file never sits in
        # memory whole; the second read comes from the page cache
        for _ in iter_bounded(p, limits):
            pass
        with open(p, "rb") as f:
            return f.read()
    return b"".join(iter_bounded(p, limits))
