"""Link layers between Ethernet and IP (bpf/packet.h ca_parse_link), run
through the kernel program by `record --pcap`.

Each encapsulation carries the same crafted TCP and UDP exchange; its
conn.log must equal the plain Ethernet recording, as Zeek's packet analyzers
(MPLS, PPPoE, PBB, VN-Tag, FabricPath, VLAN) hand the same IP packets on. The
negative cases are frames Zeek does not read as IP: those give no row.
Also: IPv4 packets whose total length is 0 (captures taken with TCP
segmentation offload).
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root]

CLI = str(Path(sys.executable).with_name("cicd-audit"))
MACS = bytes.fromhex("020000000002" "020000000001")
T0 = 1_700_000_000.0


def _exchange() -> list[bytes]:
    """IP packets: a complete TCP connection and a UDP request/reply (v4), and a UDP pair (v6)."""
    c, s = "10.1.0.1", "10.1.0.2"
    pkts = [
        IP(src=c, dst=s) / TCP(sport=40000, dport=8080, flags="S", seq=100),
        IP(src=s, dst=c) / TCP(sport=8080, dport=40000, flags="SA", seq=500, ack=101),
        IP(src=c, dst=s) / TCP(sport=40000, dport=8080, flags="A", seq=101, ack=501),
        IP(src=c, dst=s) / TCP(sport=40000, dport=8080, flags="PA", seq=101, ack=501) / (b"x" * 50),
        IP(src=s, dst=c) / TCP(sport=8080, dport=40000, flags="PA", seq=501, ack=151) / (b"y" * 70),
        IP(src=c, dst=s) / TCP(sport=40000, dport=8080, flags="FA", seq=151, ack=571),
        IP(src=s, dst=c) / TCP(sport=8080, dport=40000, flags="FA", seq=571, ack=152),
        IP(src=c, dst=s) / TCP(sport=40000, dport=8080, flags="A", seq=152, ack=572),
        IP(src=c, dst=s) / UDP(sport=50000, dport=9999) / (b"q" * 20),
        IP(src=s, dst=c) / UDP(sport=9999, dport=50000) / (b"r" * 30),
        IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=50001, dport=9998) / (b"v" * 10),
        IPv6(src="fd00::2", dst="fd00::1") / UDP(sport=9998, dport=50001) / (b"w" * 12),
    ]
    return [bytes(p) for p in pkts]


def _ethertype(ip: bytes) -> bytes:
    return b"\x08\x00" if ip[0] >> 4 == 4 else b"\x86\xdd"


def _vlan(tpid: int, vid: int) -> bytes:
    return struct.pack("!HH", tpid, vid)


def _mpls(labels: list[int], ttl: int = 64) -> bytes:
    out = b""
    for i, label in enumerate(labels):
        bottom = 1 if i == len(labels) - 1 else 0
        out += struct.pack("!I", label << 12 | bottom << 8 | ttl)
    return out


def _pppoe(ip: bytes, ppp_proto: int | None = None) -> bytes:
    proto = ppp_proto if ppp_proto is not None else (0x0021 if ip[0] >> 4 == 4 else 0x0057)
    return struct.pack("!BBHHH", 0x11, 0x00, 0x1234, len(ip) + 2, proto)


# Each maps an IP packet to a whole Ethernet frame.
ENCAPSULATIONS = {
    "plain": lambda ip: MACS + _ethertype(ip) + ip,
    "vlan": lambda ip: MACS + _vlan(0x8100, 10) + _ethertype(ip) + ip,
    "qinq-9100": lambda ip: MACS + _vlan(0x9100, 7) + _vlan(0x8100, 10) + _ethertype(ip) + ip,
    "triple-vlan": lambda ip: MACS + _vlan(0x88A8, 1) + _vlan(0x8100, 2) + _vlan(0x8100, 3) + _ethertype(ip) + ip,
    "mpls": lambda ip: MACS + b"\x88\x47" + _mpls([16]) + ip,
    "mpls-3-labels": lambda ip: MACS + b"\x88\x47" + _mpls([16, 17, 18]) + ip,
    "mpls-in-vlan": lambda ip: MACS + _vlan(0x8100, 5) + b"\x88\x47" + _mpls([100, 200]) + ip,
    "pppoe": lambda ip: MACS + b"\x88\x64" + _pppoe(ip) + ip,
    "pppoe-over-qinq": lambda ip: MACS + _vlan(0x88A8, 20) + _vlan(0x8100, 30) + b"\x88\x64" + _pppoe(ip) + ip,
    # 802.1ah: B-DA, B-SA, (B-TAG,) 0x88E7, I-TAG (4 bytes), then the customer frame.
    "pbb": lambda ip: MACS + b"\x88\xe7" + b"\x00\x01\x00\x01" + MACS + _ethertype(ip) + ip,
    "pbb-btag": lambda ip: MACS + _vlan(0x88A8, 9) + b"\x88\xe7" + b"\x00\x01\x00\x01" + MACS
    + _vlan(0x8100, 4) + _ethertype(ip) + ip,
    # VN-Tag: 0x8926, 4 bytes of tag, then the next EtherType (a VLAN tag, as Zeek reads it).
    "vntag": lambda ip: MACS + b"\x89\x26" + b"\x00\x00\x00\x00" + b"\x81\x00" + b"\x00\x0a" + _ethertype(ip) + ip,
    "vntag-in-vlan": lambda ip: MACS + _vlan(0x8100, 3) + b"\x89\x26" + b"\x80\x01\x00\x02" + b"\x81\x00"
    + b"\x00\x0b" + _ethertype(ip) + ip,
    # FabricPath: outer DA, SA, 0x8903 ... 16 bytes in all, then the inner Ethernet header.
    "fabricpath": lambda ip: MACS[:12] + b"\x89\x03" + b"\x00\x00" + MACS + _ethertype(ip) + ip,
}

# Frames Zeek does not read as IP: no connection may come of them.
NOT_IP = {
    "vntag-then-ip": lambda ip: MACS + b"\x89\x26" + b"\x00\x00\x00\x00" + _ethertype(ip) + ip,
    "mpls-no-bottom": lambda ip: MACS + b"\x88\x47" + struct.pack("!I", 16 << 12 | 64) * 9 + ip,
    "mpls-multicast": lambda ip: MACS + b"\x88\x48" + _mpls([16]) + ip,
    "pppoe-lcp": lambda ip: MACS + b"\x88\x64" + _pppoe(ip, 0xC021) + ip,
    "88a8-after-vlan": lambda ip: MACS + _vlan(0x8100, 1) + _vlan(0x88A8, 2) + _vlan(0x8100, 3) + _ethertype(ip) + ip,
}


def write_pcap(path: Path, frames: list[bytes], linktype: int = 1) -> Path:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for i, frame in enumerate(frames):
            ts = T0 + i * 0.01
            f.write(struct.pack("<IIII", int(ts), int(round((ts % 1) * 1e6)), len(frame), len(frame)))
            f.write(frame)
    return path


def record(pcap: Path, out: Path, *extra: str) -> list[dict]:
    r = subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress", *extra],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return sorted(({k: v for k, v in row.items() if k != "uid"} for row in read_log(out / "conn.log")[1]),
                  key=lambda r: (str(r["id.orig_h"]), r["id.orig_p"]))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plain")
    rows = record(write_pcap(tmp / "plain.pcap", [ENCAPSULATIONS["plain"](ip) for ip in _exchange()]), tmp / "out")
    assert len(rows) == 3
    tcp = next(r for r in rows if r["proto"] == "tcp")
    assert (tcp["history"], tcp["conn_state"], tcp["orig_pkts"], tcp["orig_ip_bytes"]) == ("ShADdFf", "SF", 5, 250)
    return rows


@pytest.mark.parametrize("name", sorted(set(ENCAPSULATIONS) - {"plain"}))
def test_encapsulated_exchange_matches_plain_ethernet(tmp_path, reference, name):
    frames = [ENCAPSULATIONS[name](ip) for ip in _exchange()]
    assert record(write_pcap(tmp_path / f"{name}.pcap", frames), tmp_path / "out") == reference


@pytest.mark.parametrize("name", sorted(NOT_IP))
def test_frames_zeek_does_not_read_as_ip_make_no_connection(tmp_path, name):
    frames = [NOT_IP[name](ip) for ip in _exchange()]
    assert record(write_pcap(tmp_path / f"{name}.pcap", frames), tmp_path / "out") == []


def test_truncated_link_headers_are_not_parsed(tmp_path, reference):
    """Frames cut inside the MPLS stack or the PPPoE header are skipped; the
    exchange after them is recorded as usual."""
    cut = [MACS + b"\x88\x47" + _mpls([16, 17])[:6], MACS + b"\x88\x64" + b"\x11\x00\x12"]
    frames = cut + [ENCAPSULATIONS["mpls"](ip) for ip in _exchange()]
    rows = record(write_pcap(tmp_path / "cut.pcap", frames), tmp_path / "out")
    assert [(r["proto"], r["orig_pkts"], r["orig_ip_bytes"]) for r in rows] == \
        [(r["proto"], r["orig_pkts"], r["orig_ip_bytes"]) for r in reference]


def _tso(packets: list[bytes]) -> list[bytes]:
    """The client's data segment with IPv4 total length 0, as captured on a TSO sender."""
    out = []
    for ip in packets:
        if ip[0] >> 4 == 4 and ip[9] == 6 and len(ip) > 40 and ip[12:16] == bytes([10, 1, 0, 1]):
            ip = ip[:2] + b"\x00\x00" + ip[4:]
        out.append(MACS + _ethertype(ip) + ip)
    return out


def test_ipv4_total_length_zero_counts_the_packet_and_no_ip_bytes_with_C(tmp_path, reference):
    """Zeek (IP analyzer, ip_hdr_len_zero) with -C reads the packet by its
    captured length, and ConnSize adds the header's total length: 0. It raises the weird all the
    same, about no flow: one row in weird.log."""
    rows = record(write_pcap(tmp_path / "tso.pcap", _tso(_exchange())), tmp_path / "out", "-C")
    assert [(w["uid"], w["id.orig_h"], w["name"], w["source"]) for w in read_log(tmp_path / "out" / "weird.log")[1]] \
        == [(None, None, "ip_hdr_len_zero", "IP")]
    tcp = next(r for r in rows if r["proto"] == "tcp")
    ref = next(r for r in reference if r["proto"] == "tcp")
    assert tcp["orig_pkts"] == ref["orig_pkts"]
    assert tcp["orig_bytes"] == ref["orig_bytes"] == 50
    assert tcp["orig_ip_bytes"] == ref["orig_ip_bytes"] - 90   # the 90-byte segment adds 0
    assert tcp["history"] == ref["history"]


def test_ipv4_total_length_zero_is_dropped_without_C(tmp_path):
    """Without -C Zeek drops it (its checksums cannot be right either), with the same weird."""
    rows = record(write_pcap(tmp_path / "tso.pcap", _tso(_exchange())), tmp_path / "out")
    assert [(w["uid"], w["id.orig_h"], w["name"], w["source"]) for w in read_log(tmp_path / "out" / "weird.log")[1]] \
        == [(None, None, "ip_hdr_len_zero", "IP")]
    tcp = next(r for r in rows if r["proto"] == "tcp")
    assert tcp["orig_pkts"] == 4
    assert tcp["orig_ip_bytes"] == 160
