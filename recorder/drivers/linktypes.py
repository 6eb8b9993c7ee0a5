"""Turn a captured frame of any common link type into an Ethernet frame.

The TC program (like the kernel path it runs in) expects Ethernet. Framing is
not packet logic: this only replaces the link-layer header, keeping the IP
packet byte for byte.

Link types read as Zeek's packet analyzers read them (src/packet_analysis/protocol/):
Ethernet, raw IP, BSD/OpenBSD loopback, Linux cooked v1/v2, FDDI (10: its 13-byte
header and 8 bytes of LLC/SNAP skipped, the rest read as IP), PPP (9: with or
without HDLC framing, RFC 1662), IEEE 802.11 (105: data frames whose LLC/SNAP
header carries an EtherType, A-MSDU subframes each on their own), radiotap
(127: its header skipped, then 802.11) and NFLOG (239: Linux netfilter's log,
its TLVs walked to the packet). A frame Zeek would not hand to IP gives None
(or no frames, from to_ethernet_frames); one its analyzer refuses with a weird
raises LinkLayerWeird.

API: to_ethernet(linktype, frame, big_endian=False) -> bytes | None (the first
IP-bearing frame); to_ethernet_frames(linktype, frame, big_endian=False) ->
list[bytes] (every one: an A-MSDU can carry several; what the replay runs);
UnsupportedLinkType, LinkLayerWeird.
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
LINKTYPE_PPP = 9
LINKTYPE_FDDI = 10
FDDI_HEADERS = 13 + 8        # frame control, addresses; LLC and SNAP (Zeek's FDDI analyzer skips both)
LINKTYPE_IEEE802_11 = 105
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_NFLOG = 239
_NFLOG_PAYLOAD = 9                  # NFULA_PAYLOAD: the packet, from its IP header
_NFLOG_FAMILIES = (2, 10)           # AF_INET, AF_INET6: what Zeek's NFLOG analyzer hands to IP

# PPP protocol numbers (RFC 1332, RFC 5072, RFC 3032) Zeek's PPP analyzer forwards.
_PPP_IPV4, _PPP_IPV6, _PPP_MPLS = 0x0021, 0x0057, 0x0281
ETHERTYPE_MPLS = 0x8847

_AF_INET6 = {10, 24, 28, 30}  # Linux, OpenBSD, FreeBSD, macOS
_FAKE_MACS = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"


class UnsupportedLinkType(ValueError):
    pass


class LinkLayerWeird(ValueError):
    """A frame Zeek's link-layer analyzer refuses with a weird: its name, addl and source."""

    def __init__(self, name: str, source: str, addl: str | None = None):
        super().__init__(name)
        self.name, self.source, self.addl = name, source, addl


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


def _ppp(frame: bytes) -> bytes | None:
    """LINKTYPE_PPP (Zeek's PPP analyzer): an optional HDLC address/control
    pair (0xff 0x03), then the 2-byte PPP protocol."""
    if len(frame) <= 2:
        return None
    if frame[0] == 0xFF and frame[1] == 0x03:
        if len(frame) <= 4:
            return None
        frame = frame[2:]
    proto = struct.unpack("!H", frame[:2])[0]
    if proto in (_PPP_IPV4, _PPP_IPV6):
        return _by_version(frame[2:])      # Zeek's IP analyzer goes by the version nibble
    if proto == _PPP_MPLS:
        return _ethernet(ETHERTYPE_MPLS, frame[2:])
    return None


def _llc_snap(data: bytes) -> bytes | None:
    """An 802.2 LLC/SNAP header with OUI 0 (RFC 1042 encapsulated Ethernet):
    the EtherType and what follows, as Ethernet."""
    if len(data) < 8 or data[:6] != b"\xaa\xaa\x03\x00\x00\x00":
        return None
    ethertype = struct.unpack("!H", data[6:8])[0]
    if ethertype not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        return None                      # Zeek's 802.11 analyzer forwards IP (and ARP) only
    return _ethernet(ethertype, data[8:])


def _ieee802_11(frame: bytes) -> list[bytes]:
    """Data frames of IEEE 802.11 (Zeek's IEEE802_11 analyzer): management and
    control frames, null-data subtypes and protected QoS frames carry nothing
    Zeek reads."""
    hdr = 24
    if len(frame) <= hdr:
        return []
    fc, flags = frame[0], frame[1]
    if not (fc >> 2) & 0x02:              # type: not data
        return []
    if (fc >> 4) & 0x04:                  # subtype without data (null, CF-ack/poll only)
        return []
    if flags & 0x03 == 0x03:              # To DS and From DS: a fourth address
        hdr += 6
    if len(frame) <= hdr:
        return []
    amsdu = False
    if (fc >> 4) & 0x08:                  # QoS data: a 2-byte QoS control field
        amsdu = bool(frame[hdr] & 0x80)
        if flags & 0x40:                  # protected: encrypted payload
            return []
        hdr += 2
    if len(frame) <= hdr:
        return []
    body = frame[hdr:]
    if not amsdu:
        one = _llc_snap(body)
        return [one] if one is not None else []
    out = []
    while body:
        # A-MSDU subframe: DA, SA, length, then LLC; padded to 4 bytes but the last.
        if len(body) < 14:
            break
        sub_len = struct.unpack("!H", body[12:14])[0]
        if len(body) < 14 + sub_len:
            break
        one = _llc_snap(body[14:14 + sub_len])
        if one is None:
            break
        out.append(one)
        body = body[14 + sub_len:]
        pad = sub_len % 4
        if len(body) >= pad:
            body = body[pad:]
    return out


def _radiotap(frame: bytes) -> list[bytes]:
    """Radiotap (Zeek's IEEE802_11_RADIO analyzer): skip the header by its
    little-endian length, then 802.11."""
    if len(frame) <= 3:
        return []
    rt_len = struct.unpack("<H", frame[2:4])[0]
    if rt_len >= len(frame):
        return []
    return _ieee802_11(frame[rt_len:])


def _nflog(frame: bytes, big_endian: bool) -> bytes | None:
    """LINKTYPE_NFLOG as Zeek's NFLog analyzer reads it: family, version and resource id, then
    TLVs (length and type in the writer's byte order, each padded to 4 bytes) up to the payload's."""
    def weird(name: str, addl: str | None = None) -> LinkLayerWeird:
        return LinkLayerWeird(name, "NFLOG", addl)

    if len(frame) <= 4:
        raise weird("truncated_nflog_header")
    family, version = frame[0], frame[1]
    if version != 0:
        raise weird("unknown_nflog_version")
    tlv = struct.Struct(">HH" if big_endian else "<HH")
    at = 4
    while True:
        if len(frame) - at <= 4:
            raise weird("nflog_no_pcap_payload")
        length, kind = tlv.unpack_from(frame, at)
        if kind == _NFLOG_PAYLOAD:
            break
        if length < 4:
            raise weird("nflog_bad_tlv_len")
        skip = (length + 3) & ~3
        if skip > len(frame) - at:
            raise weird("nflog_bad_tlv_len", f"({skip} > {len(frame) - at})")
        at += skip
    return _by_version(frame[at + 4:]) if family in _NFLOG_FAMILIES else None


def to_ethernet_frames(linktype: int, frame: bytes, big_endian: bool = False) -> list[bytes]:
    """Every Ethernet frame the captured frame carries (several for an 802.11 A-MSDU)."""
    if linktype == LINKTYPE_IEEE802_11:
        return _ieee802_11(frame)
    if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
        return _radiotap(frame)
    one = to_ethernet(linktype, frame, big_endian)
    return [one] if one is not None else []


def to_ethernet(linktype: int, frame: bytes, big_endian: bool = False) -> bytes | None:
    """The frame as Ethernet, or None when it carries nothing IP (or is cut short). big_endian: the
    capture file's byte order, which NFLOG's TLV headers are written in."""
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
    if linktype == LINKTYPE_PPP:
        return _ppp(frame)
    if linktype == LINKTYPE_FDDI:
        return _by_version(frame[FDDI_HEADERS:]) if len(frame) > FDDI_HEADERS else None
    if linktype in (LINKTYPE_IEEE802_11, LINKTYPE_IEEE802_11_RADIOTAP):
        frames = to_ethernet_frames(linktype, frame)
        return frames[0] if frames else None
    if linktype == LINKTYPE_NFLOG:
        return _nflog(frame, big_endian)
    raise UnsupportedLinkType(
        f"link type {linktype} is not supported (Ethernet, raw IP, loopback, Linux cooked, FDDI, PPP, "
        "802.11, radiotap and NFLOG are)")
