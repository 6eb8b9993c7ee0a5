"""Feed a pcap's DNS traffic through DnsConnectionLog with a minimal Zeek-like session layer.

This is a test harness, not the recorder: it stands in for the kernel side
(connection tracking, orientation, timers) just well enough to prove the DNS
logic against Zeek's baselines in /work/shared/zeek-oracle. What it does,
after Zeek:

* pcap (microsecond or nanosecond) with Ethernet/VLAN, IPv4/IPv6, UDP/TCP;
  packet time is ``sec + frac / 1e6`` as libpcap gives Zeek.
* Unless the case ran with ``-C``: a bad IPv4 header checksum drops the packet;
  a bad UDP/TCP checksum keeps the connection but its payload is not analysed.
* A connection is keyed by its 5-tuple. Its originator is the sender of the
  first packet, flipped when that packet comes from a likely server port to a
  port that is not one (for TCP only when the first packet is not a plain SYN),
  unless the responder would then be 255.255.255.255.
* The DNS analyzer is attached when the responder port is 53, 137, 5353 or
  5355 (UDP) or 53 (TCP) - Zeek's DNS::ports.
* UDP DNS connections are removed by Zeek's DNS expire timer
  (dns_session_timeout = 10 s, checked every 10 s, "idle >= 9 s"), which
  splits repeated transactions on one 5-tuple hours apart; everything else
  is removed at the end of the trace.
* The DNS analyzer's role flip (DnsOutput.flipped) swaps the connection's
  orientation, which every later call passes.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import struct
from dataclasses import dataclass, field

from cicd_audit.recorder.logs.dns.log import FIELDS, DnsConnectionLog, DnsOutput, Orientation
from cicd_audit.recorder.logs.fragments import ones_complement_sum

DNS_UDP_PORTS = {53, 137, 5353, 5355}
DNS_TCP_PORTS = {53}
# likely_server_ports as far as the DNS cases need it: the DNS ports plus the
# packet-protocol (tunnel) ports Zeek always registers.
LIKELY_SERVER_PORTS = DNS_UDP_PORTS | {2152, 2123, 3544, 4754, 4789, 5072, 6081}
DNS_SESSION_TIMEOUT = 10.0


@dataclass
class Packet:
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    proto: str
    payload: bytes
    cksum_ok: bool
    ip_ok: bool
    tcp_flags: int = 0
    seq: int = 0


def read_pcap(path: str):
    """Yield (ts, linktype, frame) from a classic pcap file."""
    data = open(path, "rb").read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(e + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(e + "IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        usec = frac // 1000 if nano else frac
        yield float(sec) + float(usec) / 1e6, linktype, frame


def decode(ts: float, linktype: int, frame: bytes) -> Packet | None:
    if linktype != 1:
        return None
    off, et = 14, struct.unpack(">H", frame[12:14])[0]
    while et in (0x8100, 0x88A8):
        et = struct.unpack(">H", frame[off + 2:off + 4])[0]
        off += 4
    ip = frame[off:]
    if et == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        ip_ok = ones_complement_sum(ip[:ihl]) == 0xFFFF
        if struct.unpack(">H", ip[6:8])[0] & 0x3FFF:
            return None     # fragments: not needed by the DNS cases
        proto, seg = ip[9], ip[ihl:total]
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        pseudo = ip[12:20] + struct.pack(">BBH", 0, proto, len(seg))
        v6 = False
    elif et == 0x86DD and len(ip) >= 40:
        plen = struct.unpack(">H", ip[4:6])[0]
        proto, seg = ip[6], ip[40:40 + plen]
        src, dst = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40]))
        pseudo = ip[8:40] + struct.pack(">IxxxB", len(seg), proto)
        ip_ok, v6 = True, True
    else:
        return None
    if proto == 17 and len(seg) >= 8:
        sport, dport, _ulen, ck = struct.unpack(">HHHH", seg[:8])
        ok = (ck == 0 and not v6) or ones_complement_sum(pseudo + seg) == 0xFFFF
        return Packet(ts, src, sport, dst, dport, "udp", seg[8:], ok, ip_ok)
    if proto == 6 and len(seg) >= 20:
        sport, dport, seq = struct.unpack(">HHI", seg[:8])
        doff = (seg[12] >> 4) * 4
        ok = ones_complement_sum(pseudo + seg) == 0xFFFF
        return Packet(ts, src, sport, dst, dport, "tcp", seg[doff:], ok, ip_ok, seg[13], seq)
    return None


@dataclass
class Conn:
    key: tuple
    proto: str
    cid: Orientation
    start: float
    last: float
    log: DnsConnectionLog | None = None
    rows: list = field(default_factory=list)


class Harness:
    def __init__(self, validate_checksums: bool = True):
        self.validate = validate_checksums
        self.conns: dict = {}
        self.timers: list = []
        self.rows: list = []
        self.weirds: list = []
        self.n = 0

    def _new_conn(self, p: Packet) -> Conn:
        cid = Orientation(p.src, p.sport, p.dst, p.dport)
        if p.proto == "tcp":
            # TCPAnalyzer::WantConnection: a plain SYN keeps its sender as originator;
            # otherwise guess from the ports (both plausible: flip only a non-SYN-ACK
            # going from the lower port to the higher one).
            syn, ack = p.tcp_flags & 0x02, p.tcp_flags & 0x10
            flip = False
            if (not syn or ack) and p.sport in LIKELY_SERVER_PORTS:
                if p.dport in LIKELY_SERVER_PORTS:
                    flip = not syn and p.sport < p.dport
                else:
                    flip = True
        else:
            flip = p.sport in LIKELY_SERVER_PORTS and p.dport not in LIKELY_SERVER_PORTS
        if flip and p.dst != "255.255.255.255":
            cid = cid.swapped()
        self.n += 1
        c = Conn(self._key(p), p.proto, cid, p.ts, p.ts)
        ports = DNS_UDP_PORTS if p.proto == "udp" else DNS_TCP_PORTS
        if cid.resp_p in ports:
            c.log = DnsConnectionLog(f"C{self.n}", cid, p.proto)
            if p.proto == "udp":
                heapq.heappush(self.timers, (p.ts + DNS_SESSION_TIMEOUT, self.n, c))
        return c

    @staticmethod
    def _key(p: Packet) -> tuple:
        a, b = (p.src, p.sport), (p.dst, p.dport)
        return (p.proto,) + (a + b if a <= b else b + a)

    def _remove(self, c: Conn, ts: float) -> None:
        if self.conns.get(c.key) is c:
            del self.conns[c.key]
            if c.log is not None:
                self._take(c, c.log.flush(c.cid, ts))

    def _run_timers(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            t, n, c = heapq.heappop(self.timers)
            if self.conns.get(c.key) is not c:
                continue
            if t - c.last >= DNS_SESSION_TIMEOUT - 1.0:
                self._remove(c, t)
            else:
                heapq.heappush(self.timers, (t + DNS_SESSION_TIMEOUT, n, c))

    def packet(self, p: Packet) -> None:
        if self.validate and not p.ip_ok:
            return
        self._run_timers(p.ts)
        key = self._key(p)
        c = self.conns.get(key)
        if c is None:
            c = self.conns[key] = self._new_conn(p)
        is_orig = (p.src, p.sport) == (c.cid.orig_h, c.cid.orig_p)
        if self.validate and not p.cksum_ok:
            return
        c.last = p.ts
        if c.log is None:
            return
        if p.proto == "udp":
            self._take(c, c.log.message(c.cid, p.ts, is_orig, p.payload))
        else:
            if p.tcp_flags & 0x02:
                self._take(c, c.log.tcp_segment(c.cid, p.ts, is_orig, p.seq + 1, b""))
            else:
                self._take(c, c.log.tcp_segment(c.cid, p.ts, is_orig, p.seq, p.payload))
            if p.tcp_flags & 0x05:        # FIN or RST: after a flip in the segment, in the new orientation
                self._take(c, c.log.tcp_closed(c.cid, p.ts))

    def _take(self, c: Conn, out: DnsOutput) -> None:
        self.rows += out.rows
        self.weirds += out.weirds
        if out.flipped:
            c.cid = c.cid.swapped()      # Zeek's FlipRoles: our conn state, swapped by us

    def finish(self) -> list:
        end = max((c.last for c in self.conns.values()), default=0.0)
        for c in list(self.conns.values()):
            self._remove(c, end)
        return self.rows


def run_pcap(path: str, validate_checksums: bool = True) -> list:
    h = Harness(validate_checksums)
    for ts, lt, frame in read_pcap(path):
        p = decode(ts, lt, frame)
        if p is not None:
            h.packet(p)
    return h.finish()


# ---------------------------------------------------------------- comparison
def _esc(s: str, in_set: bool = False) -> str:
    out = []
    for ch in s.encode("utf-8", "surrogateescape"):
        if ch == 0x5C:
            out.append("\\\\")
        elif ch < 0x20 or ch > 0x7E or (in_set and ch == 0x2C):
            out.append(f"\\x{ch:02x}")
        else:
            out.append(chr(ch))
    return "".join(out)


def tsv_value(name: str, v) -> str:
    """A row value as Zeek's TSV writer prints it (enough for dns.log)."""
    if v is None:
        return "-"
    if name == "ts":
        return "XXXXXXXXXX.XXXXXX"
    if isinstance(v, bool):
        return "T" if v else "F"
    if name == "rtt":
        return f"{v:.6f}"
    if name == "TTLs":
        return ",".join(f"{x:.6f}" for x in v) if v else "(empty)"
    if name == "answers":
        return ",".join(_esc(x, True) for x in v) if v else "(empty)"
    if isinstance(v, str):
        return _esc(v) if v else "(empty)"
    return str(v)


def read_oracle_tsv(path: str):
    """(columns, rows) of a Zeek TSV log or a zeek-cut -m file."""
    cols, rows = None, []
    for line in open(path, encoding="utf-8", errors="surrogateescape").read().splitlines():
        if line.startswith("#fields"):
            cols = line.split("\t")[1:]
        elif line.startswith("#"):
            continue
        elif cols is None:
            cols = line.split("\t")
        elif line:
            rows.append(line.split("\t"))
    return cols, rows


def compare_tsv(rows: list, oracle_path: str, ignore=("uid",)):
    """Multiset comparison; returns (missing, unexpected) lists of tuples."""
    cols, expected = read_oracle_tsv(oracle_path)
    keep = [i for i, c in enumerate(cols) if c not in ignore]
    exp = [tuple(r[i] for i in keep) for r in expected]
    got = [tuple(tsv_value(cols[i], row[cols[i]]) for i in keep) for row in rows]
    return _multiset_diff(exp, got)


def compare_json(rows: list, oracle_path: str, ignore=("uid",)):
    exp = []
    for line in open(oracle_path):
        if line.strip():
            d = json.loads(line)
            exp.append(tuple(sorted((k, json.dumps(v)) for k, v in d.items() if k not in ignore)))
    got = []
    for row in rows:
        d = {k: row[k] for k in FIELDS if row[k] is not None and k not in ignore}
        got.append(tuple(sorted((k, json.dumps(v)) for k, v in d.items())))
    return _multiset_diff(exp, got)


def _multiset_diff(exp: list, got: list):
    rest = list(got)
    missing = []
    for e in exp:
        if e in rest:
            rest.remove(e)
        else:
            missing.append(e)
    return missing, rest
