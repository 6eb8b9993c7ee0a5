"""IP fragment reassembly, as Zeek does it (src/Frag.cc, src/Reassem.cc).

The kernel program sends every fragment up whole (a FRAGMENT event, frame and
all); this module puts each datagram back together and hands the whole frame
back, and the driver runs it through the same kernel program with
BPF_PROG_TEST_RUN. So one parser, one connection table and one DNS path see
every packet, fragmented or not; only the datagram bookkeeping lives here.
Fragments are rare on any network, so user space costs nothing on the
common path, and the kernel keeps no per-datagram buffers.

Zeek's rules, kept here:
- a datagram is keyed by (source, destination, IP ID); the first fragment to
  arrive gives the header of the reassembled packet (the offset-0 fragment
  gives the next protocol);
- bytes already held win over bytes that arrive later for the same offsets;
  an overlap says ``fragment_overlap`` (same bytes) or
  ``fragment_inconsistency`` (different bytes);
- the datagram is whole once its bytes run without a hole from 0 to the end a
  last fragment (MF clear) set; other weirds: ``fragment_with_DF``,
  ``fragment_size_inconsistency``, ``excessively_small_fragment``,
  ``excessively_large_fragment``, ``fragment_protocol_inconsistency``,
  ``incompletely_captured_fragment``;
- an unfinished datagram is given up ``frag_timeout`` (5 min) after its
  first fragment; Zeek does so silently, this counts it.

Beyond Zeek: the bytes held are capped (HELD_BYTES_MAX); above it the oldest
datagram is given up and counted, so a fragment flood cannot grow memory; and
a datagram of more than FRAGMENTS_PER_DATAGRAM_MAX fragments is given up
(``cicd_audit_too_many_fragments``), so a flood of tiny overlapping pieces
cannot make each insertion slower without bound.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from cicd_audit.recorder.kernel.abi import v4_mapped
from cicd_audit.recorder.logs.events import ConnId, Fragment, address_text

FRAG_TIMEOUT_NS = 300 * 1_000_000_000      # Zeek's frag_timeout
MIN_ACCEPTABLE_FRAG_SIZE = 64               # src/Frag.cc
MAX_ACCEPTABLE_FRAG_SIZE = 64000
HELD_BYTES_MAX = 64 * 1024 * 1024
# A real datagram has at most about 45 fragments (64 KB in 1,480-byte pieces); thousands of tiny
# overlapping ones would only make each insertion slower (a job could use that to slow the recorder).
FRAGMENTS_PER_DATAGRAM_MAX = 256
_IPV6_UNFRAGMENTABLE = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options before the fragment header
_IPPROTO_FRAGMENT = 44


@dataclass(frozen=True)
class FlowWeird:
    """A weird about a flow, not a connection: Zeek's flow_weird (ports 0)."""

    ts_ns: int
    name: str
    conn_id: ConnId
    source: str | None = None       # the Zeek analyzer that raises it, when not the reassembler


@dataclass(frozen=True)
class Datagram:
    """A reassembled datagram in the frame of its first fragment, ready to run."""

    ts_ns: int
    frame: bytes
    egress: bool
    ip_len: int                 # the whole IP datagram's length
    fragments: int              # how many fragments it was made of
    sock_cookie: int            # egress: the sending socket's cookie (to find its owner), else 0
    flow: tuple | None          # TCP/UDP: (destination, 16 bytes IPv4-mapped; dport; sport; protocol)


@dataclass
class FragmentCounts:
    lost: int = 0               # fragments whose datagram was never made whole, or could not be read
    expired: int = 0            # datagrams given up unfinished: frag_timeout, or the end of the capture
    evicted: int = 0            # datagrams given up to stay under HELD_BYTES_MAX


@dataclass
class _Header:
    """What the reassembler needs from one fragment's IP header."""

    version: int
    src: bytes
    dst: bytes
    ident: int
    offset: int                 # in bytes
    more: bool                  # MF
    dont_fragment: bool
    next_proto: int
    header: bytes               # IPv4: the header with options; IPv6: the headers before the fragment header
    hdr_len: int                # bytes before the fragment's payload (IPv6: including the fragment header)
    total_len: int              # as the header says


@dataclass
class _Datagram:
    key: tuple
    first: _Header
    l2: bytes
    egress: bool
    sock_cookie: int
    expires_ns: int
    next_proto: int
    frag_size: int = 0          # 0: no last fragment seen yet
    fragments: int = 0
    blocks: list = field(default_factory=list)   # sorted [seq, upper, bytes], never overlapping
    held: int = 0


class FragmentTable:
    """Every datagram being reassembled; `add` one fragment at a time."""

    def __init__(self, held_bytes_max: int = HELD_BYTES_MAX):
        self.held_bytes_max = held_bytes_max
        self.counts = FragmentCounts()
        self._datagrams: OrderedDict[tuple, _Datagram] = OrderedDict()   # oldest first
        self._held = 0

    def add(self, frag: Fragment) -> tuple[Datagram | None, list[FlowWeird]]:
        """Take one fragment; returns the datagram it completed (or None) and its weirds
        (every one, as Zeek's flow_weird events; weird_policy picks those weird.log gets)."""
        weirds: list[FlowWeird] = []
        self.expire(frag.ts_ns)
        hdr = _parse(frag.frame, frag.l3_off)
        if hdr is None:
            self.counts.lost += 1
            return None, weirds

        def weird(name: str, about: _Header = hdr, source: str | None = None) -> None:
            self._weird(weirds, frag.ts_ns, name, about, source)

        if frag.l3_off + hdr.total_len > len(frag.frame):
            # Zeek does not try: whatever is missing can never be filled in.
            self.counts.lost += 1
            weird("incompletely_captured_fragment")
            return None, weirds
        key = (hdr.src, hdr.dst, hdr.ident)
        d = self._datagrams.get(key)
        if d is None:
            d = _Datagram(key, hdr, frag.frame[:frag.l3_off], frag.egress, frag.sock_cookie,
                          frag.ts_ns + FRAG_TIMEOUT_NS, hdr.next_proto)
            self._datagrams[key] = d
        elif hdr.hdr_len != d.first.hdr_len or hdr.next_proto != (
                d.first.next_proto if hdr.version == 4 else d.next_proto):
            weird("fragment_protocol_inconsistency")
        d.fragments += 1
        if d.fragments > FRAGMENTS_PER_DATAGRAM_MAX:
            weird("cicd_audit_too_many_fragments")
            self._forget(d)
            self.counts.lost += d.fragments
            return None, weirds
        if hdr.dont_fragment:
            weird("fragment_with_DF")           # Linux path MTU discovery for UDP does this
        if hdr.total_len < hdr.hdr_len:
            weird("fragment_protocol_inconsistency")
            d.fragments -= 1
            self.counts.lost += 1
            return None, weirds
        upper = hdr.offset + hdr.total_len - hdr.hdr_len
        if hdr.offset == 0:
            d.next_proto = hdr.next_proto
        if not hdr.more:
            if d.frag_size == 0:
                d.frag_size = upper
            elif upper != d.frag_size:
                weird("fragment_size_inconsistency")
                d.frag_size = max(d.frag_size, upper)
        elif hdr.total_len < MIN_ACCEPTABLE_FRAG_SIZE:
            weird("excessively_small_fragment")
        if upper > MAX_ACCEPTABLE_FRAG_SIZE:
            weird("excessively_large_fragment")
        if d.frag_size and upper > d.frag_size:
            weird("fragment_size_inconsistency")
            d.frag_size = upper
        payload = frag.frame[frag.l3_off + hdr.hdr_len:frag.l3_off + hdr.total_len]
        self._insert(d, hdr.offset, payload, lambda name: weird(name, d.first))
        whole = self._whole(d, lambda name: weird(name, d.first))
        if whole is None:
            self._evict_over_cap(keep=key)
            return None, weirds
        self._forget(d)
        packet = _rebuild(d, whole)
        if packet is None:
            weird("invalid_IP_header_size", d.first, "IP")
            self.counts.lost += d.fragments
            return None, weirds
        return Datagram(frag.ts_ns, d.l2 + packet, d.egress, len(packet), d.fragments,
                        d.sock_cookie or frag.sock_cookie, _flow(d, whole)), weirds

    def expire(self, now_ns: int, everything: bool = False) -> int:
        """Give up datagrams past frag_timeout (every one, at the end of a capture); returns how many."""
        given_up = 0
        while self._datagrams:
            d = next(iter(self._datagrams.values()))    # the oldest: the first to expire
            if not everything and d.expires_ns > now_ns:
                break
            self._forget(d)
            self.counts.lost += d.fragments
            given_up += 1
        self.counts.expired += given_up
        return given_up

    @property
    def pending(self) -> int:
        return len(self._datagrams)

    # -- the byte ranges of one datagram (Reassem.cc) ---------------------------
    def _insert(self, d: _Datagram, seq: int, data: bytes, weird) -> None:
        """Add data at seq; bytes already held win, overlaps are weirds."""
        if not data:
            return
        upper = seq + len(data)
        blocks = d.blocks
        if not blocks or seq != blocks[-1][1]:          # appending to the end cannot overlap
            for bseq, bupper, bdata in blocks:
                lo, hi = max(seq, bseq), min(upper, bupper)
                if lo < hi:
                    same = bdata[lo - bseq:hi - bseq] == data[lo - seq:hi - seq]
                    weird("fragment_overlap" if same else "fragment_inconsistency")
        # Keep only the parts of the new data no block holds yet.
        pieces, cursor = [], seq
        for bseq, bupper, _ in blocks:
            if bupper <= cursor or bseq >= upper:
                continue
            if bseq > cursor:
                pieces.append((cursor, bseq))
            cursor = max(cursor, bupper)
        if cursor < upper:
            pieces.append((cursor, upper))
        for lo, hi in pieces:
            blocks.append([lo, hi, data[lo - seq:hi - seq]])
            d.held += hi - lo
            self._held += hi - lo
        blocks.sort(key=lambda b: b[0])

    def _whole(self, d: _Datagram, weird) -> bytes | None:
        """The datagram's payload if it is complete (FragReassembler::BlockInserted), else None."""
        blocks = d.blocks
        if not blocks or blocks[0][0] > 0 or not d.frag_size:
            return None
        end = 0
        i = 0
        while i < len(blocks) and blocks[i][0] == end:
            end = blocks[i][1]
            i += 1
        if i < len(blocks):                      # a hole
            if end < d.frag_size:
                return None
            weird("fragment_size_inconsistency")   # whole up to the end, more beyond a hole: keep what runs on
            d.frag_size = end
        elif end > d.frag_size:
            weird("fragment_size_inconsistency")
            d.frag_size = end
        elif end < d.frag_size:
            return None                          # the tail is missing
        return b"".join(b[2] for b in blocks[:i])[:d.frag_size]

    def _forget(self, d: _Datagram) -> None:
        self._held -= d.held
        del self._datagrams[d.key]

    def _evict_over_cap(self, keep: tuple) -> None:
        while self._held > self.held_bytes_max and len(self._datagrams) > 1:
            oldest = next(iter(self._datagrams.values()))
            if oldest.key == keep:
                self._datagrams.move_to_end(keep)
                continue
            self._forget(oldest)
            self.counts.lost += oldest.fragments
            self.counts.evicted += 1

    @staticmethod
    def _weird(weirds: list, ts_ns: int, name: str, hdr: _Header, source: str | None = None) -> None:
        weirds.append(FlowWeird(ts_ns, name, ConnId(address_text(v4_mapped(hdr.src)), 0,
                                                     address_text(v4_mapped(hdr.dst)), 0, 0), source))


def _flow(d: _Datagram, payload: bytes) -> tuple | None:
    """What TC's flow table keys a TCP or UDP datagram by (its transport header opens the payload)."""
    if d.next_proto not in (6, 17) or len(payload) < 4:
        return None
    sport, dport = struct.unpack_from("!HH", payload)
    return v4_mapped(d.first.dst), dport, sport, d.next_proto


def _parse(frame: bytes, l3: int) -> _Header | None:
    """The fragment's IP header, or None if it cannot be read."""
    if len(frame) < l3 + 1:
        return None
    version = frame[l3] >> 4
    if version == 4:
        if len(frame) < l3 + 20:
            return None
        ihl = (frame[l3] & 0x0F) * 4
        total, ident, flags_off, proto = struct.unpack_from("!HHHxB", frame, l3 + 2)
        if ihl < 20 or len(frame) < l3 + ihl:
            return None
        return _Header(4, frame[l3 + 12:l3 + 16], frame[l3 + 16:l3 + 20], ident, (flags_off & 0x1FFF) * 8,
                       bool(flags_off & 0x2000), bool(flags_off & 0x4000), proto, frame[l3:l3 + ihl], ihl, total)
    if version == 6:
        if len(frame) < l3 + 40:
            return None
        plen = struct.unpack_from("!H", frame, l3 + 4)[0]
        nxt, off = frame[l3 + 6], l3 + 40
        while nxt in _IPV6_UNFRAGMENTABLE:
            if len(frame) < off + 2:
                return None
            nxt, off = frame[off], off + (frame[off + 1] + 1) * 8
        if nxt != _IPPROTO_FRAGMENT or len(frame) < off + 8:
            return None
        next_proto = frame[off]
        offlg, ident = struct.unpack_from("!HI", frame, off + 2)
        unfrag = off - l3
        return _Header(6, frame[l3 + 8:l3 + 24], frame[l3 + 24:l3 + 40], ident, offlg & 0xFFF8, bool(offlg & 1),
                       False, next_proto, frame[l3:off], unfrag + 8, 40 + plen)
    return None


def _rebuild(d: _Datagram, payload: bytes) -> bytes | None:
    """The whole datagram: the first fragment's header, made a non-fragment, and the payload.

    Its length is written in 16 bits as Zeek writes it (FragReassembler::BlockInserted): a datagram
    past 65,535 bytes wraps, and Zeek's IP analyzer then reads only as far as the wrapped length, or
    refuses the packet (invalid_IP_header_size: None here) when that is shorter than the header."""
    hdr = bytearray(d.first.header)
    fixed = 0 if d.first.version == 4 else 40        # the bytes the length field does not count
    total = fixed + (len(hdr) - fixed + len(payload)) % 65536
    if total < len(hdr):
        return None
    payload = payload[:total - len(hdr)]
    if d.first.version == 4:
        struct.pack_into("!H", hdr, 2, len(hdr) + len(payload))
        flags_off = struct.unpack_from("!H", hdr, 6)[0]
        struct.pack_into("!H", hdr, 6, flags_off & 0x4000)        # DF stays; MF and the offset go
        hdr[9] = d.next_proto
        struct.pack_into("!H", hdr, 10, 0)
        struct.pack_into("!H", hdr, 10, _checksum(bytes(hdr)))
        return bytes(hdr) + payload
    struct.pack_into("!H", hdr, 4, len(hdr) - 40 + len(payload))
    # The header that named the fragment header now names what it carried.
    nxt_at, nxt, off = 6, hdr[6], 40
    while nxt in _IPV6_UNFRAGMENTABLE:
        nxt_at, nxt, off = off, hdr[off], off + (hdr[off + 1] + 1) * 8
    hdr[nxt_at] = d.next_proto
    return bytes(hdr) + payload


def ones_complement_sum(data: bytes) -> int:
    """The 16-bit one's complement sum of the Internet checksum (RFC 1071), not yet inverted."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _checksum(data: bytes) -> int:
    return ~ones_complement_sum(data) & 0xFFFF
