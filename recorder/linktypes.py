"""Turn a captured frame of any common link type into an Ethernet frame.

The TC program (like the kernel path it runs in) expects Ethernet. Framing is
not packet logic: this only replaces the link-layer header, keeping the IP
packet byte for byte.
"""

from __future__ import annotations

import struct

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD

# pcap LINKTYPE_* values (tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0           # BSD loopback: 4-byte host-order address family
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101          # raw IPv4/IPv6
LINKTYPE_RAW_ALT = (12, 14)  # DLT_RAW on some platforms
LINKTYPE_LOOP = 108         # OpenBSD loopback: network-order family
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_AF_INET6 = {10, 24, 28, 30}  # Linux, OpenBSD, FreeBSD, macOS
_FAKE_MACS = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"


class UnsupportedLinkType(ValueError):
    pass


def _ethernet(ethertype: int, l3: bytes) -> bytes:
    return _FAKE_MACS + struct.pack("!H", ethertype) + l3


def _by_version(l3: bytes) -> bytes | None:
    if not l3:
        return None
    version = l3[0] >> 4
    if version == 4:
        return _ethernet(ETHERTYPE_IPV4, l3)
    if version == 6:
        return _ethernet(ETHERTYPE_IPV6, l3)
    return None


def to_ethernet(linktype: int, frame: bytes) -> bytes | None:
    """The frame as Ethernet, or None when it carries nothing IP (or is cut short)."""
    if linktype == LINKTYPE_ETHERNET:
        return frame
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6) or linktype in LINKTYPE_RAW_ALT:
        return _by_version(frame)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            return None
        family = struct.unpack("<I" if linktype == LINKTYPE_NULL else "!I", frame[:4])[0]
        if family not in (2, *_AF_INET6) and linktype == LINKTYPE_NULL:
            family = struct.unpack("!I", frame[:4])[0]   # written on a big-endian host
        if family == 2:
            return _ethernet(ETHERTYPE_IPV4, frame[4:])
        if family in _AF_INET6:
            return _ethernet(ETHERTYPE_IPV6, frame[4:])
        return None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        return _ethernet(struct.unpack("!H", frame[14:16])[0], frame[16:])
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return None
        return _ethernet(struct.unpack("!H", frame[0:2])[0], frame[20:])
    raise UnsupportedLinkType(
        f"link type {linktype} is not supported (Ethernet, raw IP, loopback and Linux cooked are)")
