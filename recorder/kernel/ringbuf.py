"""Read a BPF ring buffer (BPF_MAP_TYPE_RINGBUF) from user space, without bcc or libbpf.

The map is mmap'ed the way libbpf does it (kernel/bpf/ringbuf.c): the
consumer page read-write at offset 0; the producer page and the data area,
mapped twice back to back so a record that wraps around the end is
contiguous, read-only at offset page_size. Each record starts with an 8-byte
header: u32 len (bit 31: still being written; bit 30: discarded) and u32
pg_off (for the kernel). The reader walks the headers from consumer_pos to
producer_pos, stops at a busy one, copies the records before it (in C,
_ringtake.c, each straight from the ring; the Python reference copies the run
in one piece and slices it), publishes its new consumer_pos so the kernel can
reuse the space, and only then delivers them, skipping discarded ones.

Memory order: producer_pos and a record's len are read with acquire
semantics, consumer_pos is written with release semantics. On x86-64
(total store order) plain aligned loads and stores already have them; on other
machines the reads and writes go through libatomic's __atomic_load/store.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import select
from pathlib import Path
from typing import Callable

from cicd_audit import compiled

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8

_PROT_READ, _PROT_WRITE, _MAP_SHARED = mmap.PROT_READ, mmap.PROT_WRITE, mmap.MAP_SHARED
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


# Total store order: plain aligned loads and stores already have acquire/release semantics.
_TSO = os.uname().machine in ("x86_64", "i686", "i386")


def _atomics():
    """(load_u64, load_u32, store_u64) with acquire/release semantics on this machine."""
    if _TSO:
        return (lambda addr: ctypes.c_uint64.from_address(addr).value,
                lambda addr: ctypes.c_uint32.from_address(addr).value,
                lambda addr, value: setattr(ctypes.c_uint64.from_address(addr), "value", value))
    name = ctypes.util.find_library("atomic")
    if name is None:
        raise OSError("reading the ring buffer on this machine needs libatomic (apt-get install libatomic1)")
    lib = ctypes.CDLL(name)
    lib.__atomic_load_8.restype, lib.__atomic_load_8.argtypes = ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_int]
    lib.__atomic_load_4.restype, lib.__atomic_load_4.argtypes = ctypes.c_uint32, [ctypes.c_void_p, ctypes.c_int]
    lib.__atomic_store_8.restype = None
    lib.__atomic_store_8.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
    acquire, release = 2, 3            # __ATOMIC_ACQUIRE, __ATOMIC_RELEASE
    return (lambda addr: lib.__atomic_load_8(addr, acquire),
            lambda addr: lib.__atomic_load_4(addr, acquire),
            lambda addr, value: lib.__atomic_store_8(addr, value, release))


_load_u64, _load_u32, _store_u64 = _atomics()

_compiled = compiled.load("cicd_audit.recorder.kernel._ringtake", Path(__file__).with_name("_ringtake.c"))


def _mmap(length: int, prot: int, fd: int, offset: int) -> int:
    addr = _libc.mmap(None, length, prot, _MAP_SHARED, fd, offset)
    if addr in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of the ring buffer: {os.strerror(err)}")
    return addr


class RingBuffer:
    """Consumes one ring-buffer map; callback(records: list[bytes]) gets every committed record, in
    order, a pass's worth at a time.

    Records are copied out in a pass (the data area is mapped twice, so even a
    wrapped run of records is contiguous) and their space is handed back to
    the kernel before the callback sees them: taking records costs a header
    read and a copy each, whatever the callback then does.
    """

    def __init__(self, map_fd: int, size: int, callback: Callable[[list[bytes]], object]):
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"ring buffer size {size} is not a power-of-two number of pages")
        self.size = size
        self._callback = callback
        self._page = mmap.PAGESIZE
        self._mask = size - 1
        self._consumer = _mmap(self._page, _PROT_READ | _PROT_WRITE, map_fd, 0)
        try:
            self._producer = _mmap(self._page + 2 * size, _PROT_READ, map_fd, self._page)
        except OSError:
            _libc.munmap(self._consumer, self._page)
            raise
        self._data = self._producer + self._page
        # Record headers are read through a u32 view of the (twice-mapped) data area where a plain
        # load is an acquire (x86): ~8x cheaper than a ctypes object per header.
        self._headers = (memoryview((ctypes.c_char * (2 * size)).from_address(self._data)).cast("B").cast("I")
                         if _TSO else None)
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)
        self.records = 0            # delivered
        self.discarded = 0          # skipped: the program discarded them

    def consume(self, callback: Callable[[list[bytes]], object] | None = None) -> int:
        """Deliver every record committed when it looks (one pass) to callback (default: the
        constructor's); returns how many were delivered."""
        records = self._take()
        if records:
            self.records += len(records)
            (callback or self._callback)(records)
        return len(records)

    def _take(self) -> list[bytes]:
        """Copy out the committed records from consumer_pos on (up to the first one still being
        written) and give their space back; discarded ones are skipped. In C (_ringtake.c) when
        it is built; _take_in_python is its reference."""
        if _compiled is None:
            return self._take_in_python()
        records, discarded = _compiled.take(self._consumer, self._producer, self._data, self._mask)
        self.discarded += discarded
        return records

    def _take_in_python(self) -> list[bytes]:
        cons_addr, data, mask, headers = self._consumer, self._data, self._mask, self._headers
        start = cons_pos = _load_u64(cons_addr)
        prod_pos = _load_u64(self._producer)
        spans = []
        while cons_pos < prod_pos:
            length = headers[(cons_pos & mask) >> 2] if headers is not None else _load_u32(data + (cons_pos & mask))
            if length & BUSY_BIT:               # reserved, not yet submitted: stop here
                break
            size = length & ~(BUSY_BIT | DISCARD_BIT)
            if length & DISCARD_BIT:
                self.discarded += 1
            else:
                spans.append((cons_pos - start + HEADER_SIZE, size))
            cons_pos += (size + HEADER_SIZE + 7) & ~7
        if cons_pos == start:
            return []
        extent = ctypes.string_at(data + (start & mask), cons_pos - start)
        _store_u64(cons_addr, cons_pos)
        return [extent[offset:offset + size] for offset, size in spans]

    def unread_bytes(self) -> int:
        """What the ring holds that this reader has not taken yet (records and their headers)."""
        return _load_u64(self._producer) - _load_u64(self._consumer)

    def mapped(self) -> tuple[int, int, int, int]:
        """Where the ring lives in this process while it is open: the addresses of consumer_pos,
        producer_pos and the data area (mapped twice in a row), and the data area's size. A
        compiled loop reads the positions and the records' headers there, without a call per look."""
        return self._consumer, self._producer, self._data, self.size

    def wake_on(self, fd: int) -> None:
        """Also end poll()'s wait when fd becomes readable (the agent's control socket)."""
        self._epoll.register(fd, select.EPOLLIN)

    def poll(self, timeout_ms: int, callback: Callable[[list[bytes]], object] | None = None) -> int:
        """Wait up to timeout_ms for data (-1: forever), then consume; returns records delivered."""
        delivered = self.consume(callback)
        if delivered:
            return delivered
        self._epoll.poll(timeout_ms / 1000 if timeout_ms >= 0 else -1)
        return self.consume(callback)

    def close(self) -> None:
        if self._epoll is None:
            return
        self._epoll.close()
        self._epoll = None
        if self._headers is not None:
            self._headers.release()
        _libc.munmap(self._producer, self._page + 2 * self.size)
        _libc.munmap(self._consumer, self._page)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
