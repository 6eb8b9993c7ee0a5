"""Read pcap and pcapng files: every packet record yielded, every problem said.

    with CaptureFile(path) as capture:        # InputError if it is not a capture file
        for frame in capture:                  # Frame(number, ts_ns, linktype, data, wire_len)
            ...
        capture.problem                        # why reading stopped early, or None

A compiled reader can also take the packet records in bulk, straight from
the file's bytes (`layout()`, `read_records`, `took`); the records and
blocks it leaves are yielded from where it stopped, so the two share one
position and one record count.

What libpcap (and so Zeek) reads, this reads: classic pcap in either byte
order with micro- or nanosecond timestamps; pcapng sections in either byte
order, several sections per file, several interfaces with their own link type,
`if_tsresol` and `if_tsoffset`, Enhanced, Simple and obsolete Packet Blocks.
Blocks that carry no packet (name resolution, statistics, secrets, custom)
are passed over. A Simple Packet Block has no timestamp; libpcap gives its
packets time 0, and so does this.

A file that ends inside a record, or a block whose lengths contradict each
other, ends the read the way libpcap ends it: the records before it are
yielded, the damaged one is not, and `problem` says where and why, in one
sentence naming the record. Nothing is skipped silently.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cicd_audit.errors import InputError

# Classic pcap magic numbers as read little-endian (pcap-savefile(5)).
_PCAP_MICRO = 0xA1B2C3D4
_PCAP_NANO = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A            # Section Header Block type, a palindrome in either order
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D

# pcapng block types (draft-ietf-opsawg-pcapng).
_IDB, _OPB, _SPB, _EPB = 0x00000001, 0x00000002, 0x00000003, 0x00000006
_OPT_END, _OPT_IF_TSRESOL, _OPT_IF_TSOFFSET = 0, 9, 14

# libpcap refuses records larger than this whatever the snaplen says
# (MAXIMUM_SNAPLEN in pcap-int.h); a larger length means a damaged file.
MAX_RECORD_BYTES = 262_144
_MAX_BLOCK_BYTES = 16 * 1024 * 1024  # libpcap's cap on one pcapng block


@dataclass(frozen=True)
class Frame:
    number: int        # 1-based packet record number in the file
    ts_ns: int         # capture time, ns since the epoch (0 for a Simple Packet Block)
    linktype: int      # LINKTYPE_* of its interface
    data: bytes        # the captured bytes
    wire_len: int      # the packet's length on the wire (>= len(data))
    big_endian: bool = False   # the file's (section's) byte order: NFLOG's TLVs are written in it


@dataclass(frozen=True)
class ClassicLayout:
    """How a classic pcap file's records are laid out, for a reader of its raw records."""
    big_endian: bool
    nano: bool          # nanosecond timestamps (else microseconds)
    linktype: int
    limit: int          # a record longer than this is damage (see MAX_RECORD_BYTES)


@dataclass(frozen=True)
class PcapngLayout:
    """The pcapng section being read: its byte order and the interfaces described so far,
    each (linktype, units_per_s, offset_s), in order (a packet block names one by index)."""
    big_endian: bool
    interfaces: tuple[tuple[int, int, int], ...]


@dataclass
class _Interface:
    linktype: int
    snaplen: int
    units_per_s: int = 1_000_000     # if_tsresol: microseconds unless told otherwise
    offset_s: int = 0                # if_tsoffset


class _Stop(Exception):
    """The file cannot be read past this point; the message says where and why."""


class CaptureFile:
    """One pcap or pcapng file, read front to back (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._f: BinaryIO = open(self.path, "rb")
        except FileNotFoundError as exc:
            raise InputError(f"{self.path}: no such file") from exc
        except IsADirectoryError as exc:
            raise InputError(f"{self.path}: is a directory, not a capture file") from exc
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read it ({exc.strerror})") from exc
        self.problem: str | None = None
        self._classic: ClassicLayout | None = None
        self._section: tuple[str, list[_Interface]] | None = None   # pcapng: (byte order, interfaces)
        self._records = 0
        self._bulk_start = 0
        head = self._f.read(4)
        if len(head) == 4 and struct.unpack("<I", head)[0] == _PCAPNG_SHB:
            self._frames = self._pcapng(head)
        elif len(head) == 4 and (struct.unpack("<I", head)[0] in (_PCAP_MICRO, _PCAP_NANO)
                                 or struct.unpack(">I", head)[0] in (_PCAP_MICRO, _PCAP_NANO)):
            self._frames = self._pcap(head)
        else:
            self.close()
            raise InputError(f"{self.path}: not a pcap or pcapng file")
        try:
            next(self._frames)            # reads the file header: a bad one is an InputError
        except _Stop as exc:
            self.close()
            raise InputError(f"{self.path}: not a usable capture file ({exc})") from None

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    @property
    def position(self) -> int:
        """Bytes read so far (for progress; 0 from a pipe, which has no position)."""
        return self._f.tell() if self.seekable else 0

    @property
    def seekable(self) -> bool:
        """A file, not a pipe (`tcpdump -w - | cicd-audit record --pcap /dev/stdin`): only a file
        can be read in bulk, which reads ahead and goes back."""
        return self._f.seekable()

    def layout(self) -> ClassicLayout | PcapngLayout:
        """How the records from here on are laid out (a pcapng file's changes as the read meets
        interface descriptions and sections)."""
        if self._classic is not None:
            return self._classic
        endian, interfaces = self._section
        return PcapngLayout(endian == ">", tuple((i.linktype, i.units_per_s, i.offset_s) for i in interfaces))

    @property
    def records(self) -> int:
        """Packet records read so far, by iteration or in bulk."""
        return self._records

    def read_records(self, size: int) -> bytes:
        """Up to size bytes of the file from the next record (or pcapng block) on, for a bulk reader
        that takes whole records and then says how far it got with took()."""
        self._bulk_start = self._f.tell()
        return self._f.read(size)

    def took(self, nbytes: int, records: int) -> None:
        """The bulk reader took the first nbytes of read_records' bytes, `records` whole records:
        reading, in bulk or by iteration, goes on after them."""
        self._f.seek(self._bulk_start + nbytes)
        self._records += records

    def __iter__(self) -> Iterator[Frame]:
        try:
            yield from self._frames
        except _Stop as exc:
            self.problem = f"{self.path}: {exc}"

    # -- classic pcap --------------------------------------------------------
    def _pcap(self, magic: bytes) -> Iterator[Frame]:
        endian = "<" if struct.unpack("<I", magic)[0] in (_PCAP_MICRO, _PCAP_NANO) else ">"
        nano = struct.unpack(endian + "I", magic)[0] == _PCAP_NANO
        header = self._f.read(20)
        if len(header) < 20:
            raise _Stop("the file ends inside its file header")
        _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(endian + "HHiIII", header)
        linktype = network & 0xFFFF        # the upper bits describe an FCS, not the link type
        limit = max(snaplen, MAX_RECORD_BYTES)
        scale = 1 if nano else 1000
        self._classic = ClassicLayout(endian == ">", nano, linktype, limit)
        yield None                          # the file header is good (CaptureFile.__init__ takes this)
        while True:
            number = self._records + 1
            rec = self._f.read(16)
            if not rec:
                return
            if len(rec) < 16:
                raise _Stop(f"file ends inside the header of packet record {number}")
            sec, frac, caplen, wire_len = struct.unpack(endian + "IIII", rec)
            if caplen > limit:
                raise _Stop(f"packet record {number} claims {caplen} captured bytes, more than any "
                            f"capture holds ({limit}): the file is damaged here")
            data = self._f.read(caplen)
            if len(data) < caplen:
                raise _Stop(f"file ends inside packet record {number} ({len(data)} of {caplen} bytes)")
            self._records = number
            yield Frame(number, sec * 1_000_000_000 + frac * scale, linktype, data, max(wire_len, caplen),
                        endian == ">")

    # -- pcapng ----------------------------------------------------------------
    def _pcapng(self, block_type: bytes) -> Iterator[Frame]:
        endian, interfaces = self._section = self._section_header(block_type)
        yield None                          # the first section header is good (taken by __init__)
        while True:
            head = self._f.read(8)
            if not head:
                return
            number = self._records + 1
            if len(head) < 8:
                raise _Stop(f"file ends inside a block header (before packet record {number})")
            if struct.unpack("<I", head[:4])[0] == _PCAPNG_SHB:
                endian, interfaces = self._section = self._section_header(head[:4], head[4:])
                continue
            btype, length = struct.unpack(endian + "II", head)
            body = self._block_body(endian, length, number)
            if btype == _IDB:
                interfaces.append(self._interface(endian, body))
            elif btype in (_EPB, _OPB, _SPB):
                frame = self._packet(endian, btype, body, interfaces, number)
                self._records = number
                yield frame

    def _section_header(self, block_type: bytes, more: bytes = b"") -> tuple[str, list[_Interface]]:
        """Read a Section Header Block (its type already read): the section's byte order, no interfaces yet."""
        fixed = more + self._f.read(12 - len(more))     # total length, byte-order magic, version
        if len(fixed) < 12:
            raise _Stop("file ends inside a section header block")
        if struct.unpack("<I", fixed[4:8])[0] == _PCAPNG_BYTE_ORDER:
            endian = "<"
        elif struct.unpack(">I", fixed[4:8])[0] == _PCAPNG_BYTE_ORDER:
            endian = ">"
        else:
            raise _Stop("a section header block has no byte-order magic")
        length = struct.unpack(endian + "I", fixed[:4])[0]
        major = struct.unpack(endian + "H", fixed[8:10])[0]
        if major != 1:
            raise _Stop(f"pcapng version {major} is not supported (1 is)")
        if length < 28 or length % 4 or length > _MAX_BLOCK_BYTES:
            raise _Stop(f"a section header block has an impossible length ({length})")
        rest = self._f.read(length - 16)                  # section length, options, trailing length
        if len(rest) < length - 16:
            raise _Stop("file ends inside a section header block")
        if struct.unpack(endian + "I", rest[-4:])[0] != length:
            raise _Stop("a section header block's two lengths differ: the file is damaged here")
        return endian, []

    def _block_body(self, endian: str, length: int, number: int) -> bytes:
        if length < 12 or length % 4 or length > _MAX_BLOCK_BYTES:
            raise _Stop(f"a block before packet record {number} has an impossible length ({length}): "
                        "the file is damaged here")
        rest = self._f.read(length - 8)
        if len(rest) < length - 8:
            raise _Stop(f"file ends inside a block (before packet record {number}: {len(rest) + 8} of {length} bytes)")
        if struct.unpack(endian + "I", rest[-4:])[0] != length:
            raise _Stop(f"a block before packet record {number} has two different lengths: the file is damaged here")
        return rest[:-4]

    def _interface(self, endian: str, body: bytes) -> _Interface:
        if len(body) < 8:
            raise _Stop("an interface description block is too short")
        linktype, _reserved, snaplen = struct.unpack(endian + "HHI", body[:8])
        iface = _Interface(linktype, snaplen)
        for code, value in _options(endian, body[8:]):
            if code == _OPT_IF_TSRESOL and value:
                r = value[0]
                iface.units_per_s = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
            elif code == _OPT_IF_TSOFFSET and len(value) == 8:
                iface.offset_s = struct.unpack(endian + "q", value)[0]
        return iface

    def _packet(self, endian: str, btype: int, body: bytes, interfaces: list, number: int) -> Frame:
        if btype == _SPB:
            if not interfaces:
                raise _Stop(f"packet record {number} comes before any interface description")
            iface, ts_units = interfaces[0], None
            (wire_len,) = struct.unpack(endian + "I", body[:4]) if len(body) >= 4 else (None,)
            if wire_len is None:
                raise _Stop(f"packet record {number} (a simple packet block) is too short")
            caplen = min(wire_len, len(body) - 4, iface.snaplen or wire_len)
            data = body[4:4 + caplen]
        else:
            if len(body) < 20:
                raise _Stop(f"packet record {number} is too short for a packet block")
            if btype == _EPB:
                iface_id, high, low, caplen, wire_len = struct.unpack(endian + "IIIII", body[:20])
            else:       # obsolete Packet Block: a 16-bit interface id and a drops count
                iface_id, _drops, high, low, caplen, wire_len = struct.unpack(endian + "HHIIII", body[:20])
            if iface_id >= len(interfaces):
                raise _Stop(f"packet record {number} names interface {iface_id}, which was never described")
            if caplen > len(body) - 20:
                raise _Stop(f"packet record {number} claims {caplen} captured bytes but its block holds "
                            f"{len(body) - 20}: the file is damaged here")
            iface, ts_units = interfaces[iface_id], (high << 32) | low
            data = body[20:20 + caplen]
        ts_ns = 0 if ts_units is None else (
            ts_units * 1_000_000_000 // iface.units_per_s + iface.offset_s * 1_000_000_000)
        return Frame(number, ts_ns, iface.linktype, bytes(data), max(wire_len, len(data)), endian == ">")


def _options(endian: str, raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(code, value) of a pcapng options list, up to opt_endofopt or the end."""
    pos = 0
    while pos + 4 <= len(raw):
        code, size = struct.unpack(endian + "HH", raw[pos:pos + 4])
        if code == _OPT_END:
            return
        yield code, raw[pos + 4:pos + 4 + size]
        pos += 4 + size + (-size % 4)
