"""Capture files built byte by byte, so that each case is exactly the layout it names:
classic pcap, and pcapng's blocks (draft-ietf-opsawg-pcapng); and a classic file's
records read back, to build variants of a real capture."""

from __future__ import annotations

import struct


def pcap(records, endian="<", nano=False, linktype=1, snaplen=65535) -> bytes:
    """Classic pcap of (sec, frac, data) records, or (sec, frac, data, wire_len) for a frame the
    capture cut (as a short snaplen cuts it)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for sec, frac, data, *wire_len in records:
        out += struct.pack(endian + "IIII", sec, frac, len(data), wire_len[0] if wire_len else len(data)) + data
    return out


def block(btype: int, body: bytes, endian="<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(endian + "II", btype, length) + body + struct.pack(endian + "I", length)


def option(code: int, value: bytes, endian="<") -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(endian="<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def idb(linktype=1, snaplen=0, tsresol=None, tsoffset=None, endian="<") -> bytes:
    opts = b""
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), endian)
    if tsoffset is not None:
        opts += option(14, struct.pack(endian + "q", tsoffset), endian)
    if opts:
        opts += option(0, b"", endian)
    return block(1, struct.pack(endian + "HHI", linktype, 0, snaplen) + opts, endian)


def epb(iface: int, ts_units: int, data: bytes, endian="<") -> bytes:
    head = struct.pack(endian + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data))
    return block(6, head + data, endian)


def spb(data: bytes, wire_len: int | None = None, endian="<") -> bytes:
    return block(3, struct.pack(endian + "I", wire_len or len(data)) + data, endian)


def opb(iface: int, ts_units: int, data: bytes, endian="<") -> bytes:
    head = struct.pack(endian + "HHIIII", iface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data))
    return block(2, head + data, endian)


def record_offsets(data: bytes) -> list[int]:
    """Byte offsets of every packet record in a classic pcap (after the 24-byte header)."""
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack(endian + "I", data[pos + 8:pos + 12])[0]
    return offsets


def classic_records(data: bytes) -> list[tuple[int, int, bytes]]:
    """(seconds, fraction, frame) of every record of a little-endian classic pcap."""
    out = []
    for pos in record_offsets(data):
        sec, frac, caplen, _ = struct.unpack("<IIII", data[pos:pos + 16])
        out.append((sec, frac, data[pos + 16:pos + 16 + caplen]))
    return out
