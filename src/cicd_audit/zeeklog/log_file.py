"""One Zeek log file being written: buffered whole lines, rotation, and a full disk.

Rows are buffered and written as whole lines with one ``os.write`` each flush
(at most ``flush_interval`` seconds or ``max_buffer`` bytes after a row), so a
reader of a live file only ever sees complete lines.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Mapping
from typing import Callable

from .disk_room import CLOSE_ROOM, DISK_FULL, keep_room
from .json_format import format_json_row
from .schema import Schema
from .tsv_format import compiled_tsv_row, format_tsv_row, open_close_timestamp, tsv_header


class LogWriter:
    """Write one Zeek log file, ``<directory>/<schema.path>.log``.

    Use as a context manager. ``write()`` is thread-safe. Rows reach the file
    as whole lines at least every ``flush_interval`` seconds (checked on each
    write; call ``flush()`` from a timer if rows can stop arriving) or when
    ``max_buffer`` bytes are pending; ``flush_interval=0`` writes every row at
    once.

    ``opener(file_name) -> fd`` creates the file (default: create or truncate
    the path); the recorder passes one that never follows or reuses a file.

    ``rotate(rename)`` ends the file as Zeek's log rotation does: ``#close``,
    then ``rename(name, rotated_name(open time))`` (the caller's: it may pick
    another free name, and returns the one it used), and a new file with its
    own header in its place.

    When the file cannot be written (disk full, quota, I/O error) the file is
    cut back to its last complete line, ``failure`` says why, later rows are
    counted in ``lost_rows`` instead of written, and ``on_failure(writer)`` is
    called once. Nothing raises: the log stays valid, only shorter, and
    ``close()`` still tries to write ``#close``.

    With ``reserve`` > 0, the disk space for each write and for the ``#close``
    line after it is allocated before the write (fallocate), and a write that
    cannot get it is refused as "disk full" before anything is written: so
    ``#close`` still fits when something else fills the disk. The first
    ``reserve`` bytes after the header are allocated at open (for a log that
    writes little and late, such as capture_stats.log). What is held past the
    end is freed at close. File systems without fallocate write as before.
    """

    def __init__(
        self,
        directory,
        schema: Schema,
        fmt: str = "tsv",
        open_time: float | None = None,
        flush_interval: float = 1.0,
        max_buffer: int = 65536,
        opener: Callable[[str], int] | None = None,
        on_failure: Callable[[LogWriter], None] | None = None,
        reserve: int = 0,
    ):
        if fmt not in ("tsv", "json"):
            raise ValueError(f"fmt must be 'tsv' or 'json', not {fmt!r}")
        self.schema = schema
        self.fmt = fmt
        self.path = os.path.join(os.fspath(directory), schema.path + ".log")
        self.rows = 0
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._buf: list[bytes] = []
        self._buf_len = 0
        self._buf_rows = 0
        self.failure: str | None = None
        self.lost_rows = 0
        self._on_failure = on_failure
        self._reserve = reserve
        self._lock = threading.Lock()
        self._format = format_tsv_row if fmt == "tsv" else format_json_row
        self._compiled_row = compiled_tsv_row(schema) if fmt == "tsv" else None
        self._opener = opener
        self._fd: int | None = None
        self._open(open_time)

    def _open(self, open_time: float | None) -> None:
        """Create the file and write its header (see the class for reserve)."""
        name = self.schema.path + ".log"
        if self._opener is not None:
            self._fd = self._opener(name)
        else:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        self.open_time = time.time() if open_time is None else open_time
        self.opened = self._last_flush = time.monotonic()
        self._complete = 0          # bytes in the file that end on a whole line
        try:
            header = tsv_header(self.schema, self.open_time) if self.fmt == "tsv" else b""
            if self._reserve:
                try:
                    self._room_for(len(header) + self._reserve)
                except OSError as exc:
                    self._failed(exc, 0)
            self._write_all(header)
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise

    # -- context manager
    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def size(self) -> int:
        """Bytes of the current file, with the rows still pending."""
        return self._complete + self._buf_len

    def rotated_name(self) -> str:
        """Zeek's default name for a rotated log: <path>.<its #open time>.log."""
        return f"{self.schema.path}.{open_close_timestamp(self.open_time)}.log"

    def rotate(self, rename: Callable[[str, str], str], close_time: float | None = None) -> str | None:
        """End this file and go on in a new one (see the class). Returns the rotated file's name;
        None, and nothing done, when the log is closed or has failed (its file stays as it is)."""
        with self._lock:
            if self._fd is None or self.failure is not None:
                return None
            self._close_locked(close_time)
            rotated = rename(self.schema.path + ".log", self.rotated_name())
            self._open(close_time)
            return rotated

    def _write_all(self, data: bytes, rows: int = 0) -> None:
        """Write whole lines; on failure cut the file back to its last whole line (see the class)."""
        if self.failure is not None:
            self.lost_rows += rows
            return
        try:
            self._room_for(len(data) + CLOSE_ROOM)
        except OSError as exc:
            self._failed(exc, rows)
            return
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self._cut_back()
            self._failed(exc, rows)
            return
        self._complete += len(data)

    def _room_for(self, length: int) -> None:
        """Allocate the next `length` bytes (see the class); raises ENOSPC when the disk is full."""
        if self._reserve and self._fd is not None:
            err = keep_room(self._fd, self._complete, length)
            if err in DISK_FULL:
                raise OSError(err, os.strerror(err))

    def _failed(self, exc: OSError, rows: int) -> None:
        self.failure = f"{exc.strerror} (errno {exc.errno})"
        self.lost_rows += rows
        if self._on_failure is not None:
            self._on_failure(self)

    def _cut_back(self) -> None:
        """No half row stays behind."""
        try:
            os.ftruncate(self._fd, self._complete)
        except OSError:
            pass

    def _write_close_line(self, line: bytes) -> None:
        """#close, also after a failure (the rows are lost, the file still ends as Zeek's do):
        into the room every write left for it, whole or not at all."""
        try:
            if os.pwrite(self._fd, line, self._complete) != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            self._cut_back()
            if self.failure is None:
                self._failed(exc, 0)
            return
        self._complete += len(line)

    def write(self, record: Mapping[str, object]) -> None:
        """Format and queue one row; raises on unknown fields or bad values
        (nothing is written for a bad row)."""
        if self._compiled_row is not None and type(record) is dict:
            try:
                line = self._compiled_row(record)
            except (TypeError, ValueError):
                line = self._format(self.schema, record)    # raises again, naming the key or the field
        else:
            line = self._format(self.schema, record)
        with self._lock:
            if self._fd is None:
                raise ValueError(f"write to closed log {self.path}")
            self._buf.append(line)
            self._buf_len += len(line)
            self.rows += 1
            self._buf_rows += 1
            if (
                self._buf_len >= self._max_buffer
                or time.monotonic() - self._last_flush >= self._flush_interval
            ):
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self._buf:
            data, rows = b"".join(self._buf), self._buf_rows
            self._buf.clear()
            self._buf_len = self._buf_rows = 0
            self._write_all(data, rows)
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        """Write pending rows (whole lines) to the file."""
        with self._lock:
            if self._fd is not None:
                self._flush_locked()

    def close(self, close_time: float | None = None) -> None:
        """Flush, write ``#close`` (TSV) and close. Idempotent."""
        with self._lock:
            if self._fd is not None:
                self._close_locked(close_time)

    def _close_locked(self, close_time: float | None) -> None:
        try:
            self._flush_locked()
            if self.fmt == "tsv":
                self._write_close_line((f"#close\t{open_close_timestamp(close_time)}\n").encode())
        finally:
            if self._reserve:         # what was held past the end (tmpfs would keep it)
                keep_room(self._fd, self._complete, self._reserve + CLOSE_ROOM, release=True)
            os.close(self._fd)
            self._fd = None

    def __del__(self):  # pragma: no cover - safety net only
        try:
            if getattr(self, "_fd", None) is not None:
                self.close()
        except Exception:
            pass
