"""Tunnels (bpf/tunnel.h), run through the kernel program by `record --pcap`.

The exchange of tests/test_link_layers.py is sent through each tunnel Zeek
decapsulates by default. The inner connections must be recorded exactly as
the same packets on plain Ethernet, plus `tunnel_parents` naming the tunnel:
the outer UDP connection's uid (VXLAN, Geneve, GTP-U, AYIYA), or the uid of an
IP tunnel (IP-in-IP, GRE, GRE over UDP), which Zeek keeps out of conn.log.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from test_link_layers import MACS, _ethertype, _exchange, write_pcap

from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root]

CLI = str(Path(sys.executable).with_name("cicd-audit"))
A, B = "192.0.2.1", "192.0.2.2"          # the tunnel endpoints


def _outer_udp(payload: bytes, sport: int, dport: int) -> bytes:
    return MACS + b"\x08\x00" + bytes(IP(src=A, dst=B) / UDP(sport=sport, dport=dport) / payload)


def _outer_ip(proto: int, payload: bytes) -> bytes:
    return MACS + b"\x08\x00" + bytes(IP(src=A, dst=B, proto=proto) / payload)


def _inner_frame(ip: bytes) -> bytes:
    return MACS + _ethertype(ip) + ip


def _vxlan(ip: bytes) -> bytes:
    return _outer_udp(struct.pack("!BBHI", 0x08, 0, 0, 42 << 8) + _inner_frame(ip), 50000, 4789)


def _geneve(ip: bytes, option_words: int = 2) -> bytes:
    """Geneve with options, carrying the IP packet directly (protocol 0x0800 / 0x86DD)."""
    proto = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    hdr = struct.pack("!BBHI", option_words, 0, proto, 7 << 8) + b"\x00" * (4 * option_words)
    return _outer_udp(hdr + ip, 50001, 6081)


def _gtp(ip: bytes) -> bytes:
    """A GTPv1-U G-PDU with sequence number and one extension header (PDU session container)."""
    ext = bytes([1, 0x10, 0x09, 0])              # 4 bytes: length 1, contents, next type 0
    hdr = struct.pack("!BBHIHBB", 0x36, 0xFF, len(ip) + 4 + len(ext), 0x1234, 1, 0, 0x85) + ext
    return _outer_udp(hdr + ip, 2152, 2152)


def _ayiya(ip: bytes) -> bytes:
    nxt = 4 if ip[0] >> 4 == 4 else 41
    hdr = bytes([0x41, 0x52, 0x11, nxt]) + struct.pack("!I", 0) + b"\x20\x01" + b"\x00" * 14 + b"\x00" * 20
    return _outer_udp(hdr + ip, 50002, 5072)


def _gre(ip: bytes, key: bool = True) -> bytes:
    proto = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    hdr = struct.pack("!HH", 0x2000 if key else 0, proto) + (struct.pack("!I", 99) if key else b"")
    return _outer_ip(47, hdr + ip)


def _gre_teb(ip: bytes) -> bytes:
    """Transparent Ethernet bridging: a whole Ethernet frame in GRE."""
    return _outer_ip(47, struct.pack("!HH", 0, 0x6558) + _inner_frame(ip))


def _wlan(payload: bytes, qos: bool = True, four_addresses: bool = False, amsdu: bool = False,
          protected: bool = False) -> bytes:
    """An IEEE 802.11 data frame (QoS data by default) around payload."""
    fc0 = 0x88 if qos else 0x08
    flags = (0x03 if four_addresses else 0x01) | (0x40 if protected else 0)
    hdr = bytes([fc0, flags]) + bytes(2) + bytes(range(1, 19)) + bytes(2)       # duration, 3 addresses, sequence
    if four_addresses:
        hdr += bytes(range(30, 36))
    if qos:
        hdr += bytes([0x80 if amsdu else 0, 0])
    return hdr + payload


def _snap(ip: bytes) -> bytes:
    return b"\xaa\xaa\x03\x00\x00\x00" + _ethertype(ip) + ip


def _gre_aruba(ip: bytes, proto: int = 0x8200, **wlan) -> bytes:
    """Aruba's GRE: an 802.11 frame whose LLC/SNAP payload is the packet (Zeek: DLT_IEEE802_11)."""
    return _outer_ip(47, struct.pack("!HH", 0, proto) + _wlan(_snap(ip), **wlan))


def _gre_aruba_wds(ip: bytes) -> bytes:
    """Another of Aruba's protocol types, a plain (not QoS) data frame with four addresses."""
    return _gre_aruba(ip, proto=0x8310, qos=False, four_addresses=True)


def _ipip(ip: bytes) -> bytes:
    return _outer_ip(4 if ip[0] >> 4 == 4 else 41, ip)


def _gre_udp(ip: bytes) -> bytes:
    proto = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    return _outer_udp(struct.pack("!HH", 0, proto) + ip, 50003, 4754)


def _teredo(ip: bytes) -> bytes:
    """Teredo with an origin indication; IPv6 only (the exchange's IPv4 packets are not Teredo)."""
    origin = struct.pack("!HHI", 0, 0xFFFF ^ 40000, 0xFFFFFFFF ^ 0xC0000201)
    return _outer_udp(origin + ip, 50004, 3544) if ip[0] >> 4 == 6 else _vxlan(ip)


UDP_TUNNELS = {"vxlan": _vxlan, "geneve": _geneve, "gtp-u": _gtp, "ayiya": _ayiya}
IP_TUNNELS = {"gre": _gre, "gre-teb": _gre_teb, "ip-in-ip": _ipip, "gre-over-udp": _gre_udp,
              "gre-aruba": _gre_aruba, "gre-aruba-wds": _gre_aruba_wds}


def record(frames: list[bytes], tmp: Path, *extra: str) -> tuple[list[dict], Path]:
    out = tmp / "out"
    tmp.mkdir(exist_ok=True)
    r = subprocess.run([CLI, "record", "--pcap", str(write_pcap(tmp / "t.pcap", frames)), "--out", str(out),
                        "--no-progress", *extra], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return list(read_log(out / "conn.log")[1]), out


def _inner(rows: list[dict]) -> list[dict]:
    """The exchange's rows without uid and tunnel_parents, in a stable order."""
    return sorted(({k: v for k, v in r.items() if k not in ("uid", "tunnel_parents")}
                   for r in rows if str(r["id.orig_h"]) not in (A, B)),
                  key=lambda r: (str(r["id.orig_h"]), r["id.orig_p"]))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    rows, _ = record([_inner_frame(ip) for ip in _exchange()], tmp_path_factory.mktemp("plain"))
    assert len(rows) == 3 and all(r["tunnel_parents"] is None for r in rows)
    return _inner(rows)


@pytest.mark.parametrize("name", sorted(UDP_TUNNELS))
def test_udp_tunnel_rows_name_the_outer_connection(tmp_path, plain, name):
    rows, _ = record([UDP_TUNNELS[name](ip) for ip in _exchange()], tmp_path)
    assert _inner(rows) == plain
    outer = [r for r in rows if str(r["id.orig_h"]) == A]
    assert len(outer) == 1 and outer[0]["proto"] == "udp" and outer[0]["orig_pkts"] == 12
    assert outer[0]["tunnel_parents"] is None
    for r in rows:
        if r is not outer[0]:
            assert list(r["tunnel_parents"]) == [outer[0]["uid"]], r


@pytest.mark.parametrize("name", sorted(IP_TUNNELS))
def test_ip_tunnel_rows_name_a_tunnel_that_is_no_connection(tmp_path, plain, name):
    rows, _ = record([IP_TUNNELS[name](ip) for ip in _exchange()], tmp_path)
    assert _inner(rows) == plain
    assert not [r for r in rows if r["proto"] == "unknown_transport"]    # no GRE / IP-in-IP rows
    inner = [r for r in rows if str(r["id.orig_h"]) != A]
    parents = {p for r in inner for p in r["tunnel_parents"]}
    assert len(parents) == 1                                              # one tunnel: the address pair's
    assert parents.isdisjoint(r["uid"] for r in rows)


@pytest.mark.parametrize("exponent", [8, 11])
def test_inner_headers_far_into_the_frame_are_read(tmp_path, exponent):
    """An AYIYA identity of 2^8 bytes (Zeek's ayiya-large-identity trace): the inner IPv6 header
    starts 326 bytes into the frame, past the 256 the program once read headers to. One of 2^11:
    2,118 bytes in, past the 511 it read them to later."""
    inner = bytes(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=40000, dport=40001) / b"ping")
    identity, signature = b"\x5a" * 2 ** exponent, b"\x00" * 20
    ayiya = bytes([exponent << 4 | 1, 0x52, 0x11, 41]) + struct.pack("!I", 0) + identity + signature
    frame = _outer_udp(ayiya + inner, 12345, 5072)
    assert len(frame) - len(inner) == 70 + 2 ** exponent
    rows, _ = record([frame], tmp_path)
    outer = next(r for r in rows if str(r["id.orig_h"]) == A)
    tunnelled = next(r for r in rows if str(r["id.orig_h"]) == "fd00::1")
    assert list(tunnelled["tunnel_parents"]) == [outer["uid"]]
    assert (tunnelled["orig_ip_bytes"], tunnelled["history"]) == (len(inner), "D")


def _subframe(body: bytes, last: bool = False) -> bytes:
    """An A-MSDU subframe: destination, source, length, body, then the (length % 4) bytes of padding
    Zeek skips after every subframe but the last."""
    return bytes(range(12)) + struct.pack("!H", len(body)) + body + (b"" if last else bytes(len(body) % 4))


def _amsdu(*bodies: bytes, tail: bytes = b"") -> bytes:
    """An A-MSDU in Aruba's GRE, one subframe per body."""
    subframes = b"".join(_subframe(body, last=i == len(bodies) - 1) for i, body in enumerate(bodies))
    return _outer_ip(47, struct.pack("!HH", 0, 0x8200) + _wlan(subframes + tail, amsdu=True))


ARP_LLC = b"\xaa\xaa\x03\x00\x00\x00\x08\x06" + bytes(28)
COUNTS = ("orig_pkts", "orig_ip_bytes", "orig_bytes", "resp_pkts", "resp_ip_bytes", "resp_bytes", "history",
          "conn_state")


def test_every_subframe_of_an_aruba_a_msdu_is_a_packet_of_its_own(tmp_path, plain):
    """Zeek's 802.11 analyzer forwards each subframe; an ARP one makes no connection and the walk goes on."""
    ips = _exchange()
    assert any(len(_snap(ip)) % 4 for ip in ips)                 # some subframes are padded
    # No connection has all its packets in one frame: a packet's time is its frame's, and Zeek writes no
    # duration and no bytes for a connection of zero duration.
    frames = [_amsdu(*map(_snap, ips[a:b])) for a, b in ((0, 3), (3, 6), (6, 9), (9, 11), (11, 12))]
    frames.append(_amsdu(ARP_LLC, _snap(ips[8])))
    rows, out = record(frames, tmp_path)
    counts = {(str(r["id.orig_h"]), r["id.orig_p"]): [r[k] for k in COUNTS] for r in rows}
    expected = {(str(r["id.orig_h"]), r["id.orig_p"]): [r[k] for k in COUNTS] for r in plain}
    udp = ("10.1.0.1", 50000)
    expected[udp][0:3] = [2, 2 * expected[udp][1], 2 * expected[udp][2]]     # the ARP frame's IP packet
    expected[udp][6] = "Dd"
    assert counts == expected
    assert len({p for r in rows for p in r["tunnel_parents"]}) == 1
    assert not (out / "weird.log").exists() or _weirds(out) == []


def test_an_a_msdu_is_read_up_to_where_zeek_stops(tmp_path):
    """Zeek stops at a subframe it cannot read, with its weird about the frame; the ones before count."""
    first, second = _exchange()[8], _exchange()[9]
    stray = _snap(first)
    cases = {
        "not SNAP": (_amsdu(_snap(first), b"\x42\x42\x03" + bytes(30), _snap(second)),
                     ["invalid_802_11_amsdu_inner_packet"]),
        "no analyzer for the ethertype": (_amsdu(_snap(first), stray[:6] + b"\x88\xcc" + bytes(20), _snap(second)),
                                          ["invalid_802_11_amsdu_inner_packet"]),
        "LLC cut short": (_amsdu(_snap(first), b"\xaa\xaa\x03\x00", _snap(second)),
                          ["truncated_802_11_llc_header", "invalid_802_11_amsdu_inner_packet"]),
        "a length past the frame": (_amsdu(_snap(first), tail=bytes(12) + struct.pack("!H", 500) + bytes(8)),
                                    ["truncated_802_11_amsdu_packet"]),
        "a header cut short": (_amsdu(_snap(first), tail=bytes(13)), ["truncated_802_11_amsdu_header"]),
        "an IP header Zeek refuses": (_amsdu(_snap(first), stray[:8] + bytes([0x75]) + _snap(second)[9:],
                                             _snap(second)),
                                      ["unknown_ip_version", "invalid_802_11_amsdu_inner_packet"]),
    }
    for name, (frame, weirds) in cases.items():
        rows, out = record([frame], tmp_path / name.replace(" ", "-"))
        assert [(str(r["id.orig_h"]), r["orig_pkts"], r["resp_pkts"]) for r in rows] == [("10.1.0.1", 1, 0)], name
        assert [w[5:] for w in _weirds(out)] == [
            (w + "_in_tunnel", None, "IP" if w == "unknown_ip_version" else "IEEE802_11") for w in weirds], name


def test_subframes_of_full_sized_packets_are_read_far_into_the_frame(tmp_path):
    """An A-MSDU of 1,100-byte packets: the last subframe's headers start 2,300 bytes in. A replay
    runs at most 3,712 bytes of a frame (packet_runner.DEFAULT_MAX_DATA): a subframe whose headers
    are past that is reported, with its bytes."""
    v4 = bytes(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=50000, dport=9999) / bytes(1072))
    v6 = bytes(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=50001, dport=9998) / bytes(1052))
    frame = _amsdu(_snap(v4), _snap(v4), _snap(v6))
    assert 2300 < len(frame) - len(_snap(v6)) and len(frame) < 3712
    past_the_run = _amsdu(*[_snap(v4)] * 5)          # the fifth subframe starts 4,552 bytes in
    rows, out = record([frame, past_the_run], tmp_path)
    assert sorted((str(r["id.orig_h"]), r["orig_pkts"], r["orig_ip_bytes"]) for r in rows) == [
        ("10.1.0.1", 2 + 4, 6 * 1100), ("fd00::1", 1, 1100)]
    assert _weirds(out) == [
        (None, None, None, None, None, "cicd_audit_802_11_amsdu_rest_unread", str(14 + len(_snap(v4))), "IEEE802_11")]


def test_an_a_msdu_inside_another_s_subframe_is_reported_and_the_outer_one_read_on(tmp_path):
    """One A-MSDU is walked at a time: one carried in a subframe (in GRE in GRE) is reported with its
    bytes, and the walk of the outer one goes on with its next subframe."""
    first, second = _exchange()[8], _exchange()[9]
    subframes = _subframe(_snap(first)) + _subframe(_snap(first), last=True)
    nested = bytes(IP(src="192.0.2.3", dst="192.0.2.4", proto=47) / (struct.pack("!HH", 0, 0x8200)
                                                                    + _wlan(subframes, amsdu=True)))
    rows, out = record([_amsdu(_snap(nested), _snap(second))], tmp_path)
    assert [(str(r["id.orig_h"]), r["orig_pkts"], r["resp_pkts"]) for r in rows] == [("10.1.0.2", 1, 0)]   # the reply alone
    assert _weirds(out) == [
        (None, None, None, None, None, "cicd_audit_802_11_amsdu_rest_unread", str(len(subframes)), "IEEE802_11")]


def test_subframes_past_what_one_packet_s_tail_calls_reach_are_reported(tmp_path):
    """Each subframe after the first is another run of the decap stage, and a packet has 33 tail calls:
    what is left after them is a recorder weird with its bytes, not lost without a word."""
    ip = bytes(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=50000, dport=9999) / b"q")
    body = _snap(ip)
    count = 60
    rows, out = record([_amsdu(*[body] * count)], tmp_path)
    (row,) = rows
    (weird,) = _weirds(out)
    assert weird[:6] == (None, None, None, None, None, "cicd_audit_802_11_amsdu_rest_unread")    # about the frame
    assert weird[7] == "IEEE802_11"
    per_subframe = len(_subframe(body))
    unread = int(weird[6])
    assert unread % per_subframe == per_subframe - len(body) % 4         # the last one is not padded
    assert row["orig_pkts"] + -(-unread // per_subframe) == count
    assert 20 < row["orig_pkts"] < count


def test_802_11_frames_zeek_reads_nothing_from_make_no_connection(tmp_path):
    ip = _exchange()[8]
    arp = b"\xaa\xaa\x03\x00\x00\x00\x08\x06" + bytes(28)
    management = _outer_ip(47, struct.pack("!HH", 0, 0x8200) + bytes([0x80, 0]) + bytes(22) + _snap(ip))
    frames = [_gre_aruba(ip, protected=True), _outer_ip(47, struct.pack("!HH", 0, 0x8200) + _wlan(arp)), management,
              _outer_ip(47, struct.pack("!HH", 0, 0x8200) + _wlan(b"")[:20]),          # cut in the header
              _outer_ip(47, struct.pack("!HH", 0, 0x8200) + _wlan(b"\xaa\xaa\x03"))]   # cut in the LLC
    rows, out = record(frames, tmp_path)
    assert rows == []
    assert sorted(w[5:] for w in _weirds(out)) == [
        ("truncated_802_11_header_in_tunnel", None, "IEEE802_11"),
        ("truncated_802_11_llc_header_in_tunnel", None, "IEEE802_11"),
    ]


def test_nesting_beyond_max_depth_is_a_weird_and_an_X(tmp_path):
    """Tunnel::max_depth is 4: a fifth VXLAN layer is not opened."""
    def nest(ip: bytes, layers: int) -> bytes:
        frame = _inner_frame(ip)
        for i in range(layers):
            udp = IP(src=f"10.9.{i}.1", dst=f"10.9.{i}.2") / UDP(sport=40000 + i, dport=4789)
            frame = MACS + b"\x08\x00" + bytes(udp / (struct.pack("!BBHI", 8, 0, 0, 0) + frame))
        return frame

    dns = bytes(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=40100, dport=9000) / b"hello")
    rows, out = record([nest(dns, 4)], tmp_path / "four")
    assert any(str(r["id.orig_h"]) == "10.1.0.1" for r in rows)
    rows, out = record([nest(dns, 5)], tmp_path / "five")
    assert not any(str(r["id.orig_h"]) == "10.1.0.1" for r in rows)
    deepest = next(r for r in rows if str(r["id.orig_h"]) == "10.9.0.1")   # the innermost VXLAN layer
    assert deepest["history"] == "DX"
    # Zeek's VXLAN analyzer raises it about the packet (a flow weird: no uid, ports 0), which is
    # inside four tunnels: "_in_tunnel" (core.tunnels.max-depth-exceeded's baseline).
    assert _weirds(out) == [(None, "10.9.0.1", 0, "10.9.0.2", 0, "exceeded_tunnel_max_depth_in_tunnel", None,
                             "VXLAN")]


@pytest.mark.parametrize("max_depth, opened", [("2", 2), ("1", 1), ("0", 1), (None, 3)])
def test_tunnel_max_depth_is_zeek_s_setting(tmp_path, max_depth, opened):
    """`--redef Tunnel::max_depth=N` as Zeek's core.tunnels.max-depth-exceeded runs it: a packet inside N
    tunnels opens no more. The outermost packet always opens its tunnel (Zeek checks the packet's
    encapsulation, which the outermost has none of), so 0 opens one layer, as 1 does."""
    frame = _inner_frame(_exchange()[8])
    for i in range(3):                                   # three VXLAN layers, innermost first
        udp = IP(src=f"10.9.{i}.1", dst=f"10.9.{i}.2") / UDP(sport=40000 + i, dport=4789)
        frame = MACS + b"\x08\x00" + bytes(udp / (struct.pack("!BBHI", 8, 0, 0, 0) + frame))
    extra = ["--redef", f"Tunnel::max_depth={max_depth}"] if max_depth is not None else []
    rows, out = record([frame], tmp_path, *extra)
    # The outermost layer is 10.9.2.x; the one at depth `opened` is the first not opened.
    seen = sorted(str(r["id.orig_h"]) for r in rows)
    layers = [f"10.9.{2 - d}.1" for d in range(min(opened + 1, 3))] + (["10.1.0.1"] if opened == 3 else [])
    assert seen == sorted(layers)
    weirds = _weirds(out)
    if opened == 3:
        assert weirds == []
    else:
        refused = f"10.9.{2 - opened}.1"
        assert next(r["history"] for r in rows if str(r["id.orig_h"]) == refused) == "DX"
        assert weirds == [(None, refused, 0, f"10.9.{2 - opened}.2", 0, "exceeded_tunnel_max_depth_in_tunnel",
                           None, "VXLAN")]


def _weirds(out: Path) -> list[tuple]:
    return [(w["uid"], str(w["id.orig_h"]) if w["id.orig_h"] else None, w["id.orig_p"],
             str(w["id.resp_h"]) if w["id.resp_h"] else None, w["id.resp_p"], w["name"], w["addl"], w["source"])
            for w in read_log(out / "weird.log")[1]]


def _in_vxlan(frame: bytes, sport: int = 50000) -> bytes:
    return _outer_udp(struct.pack("!BBHI", 8, 0, 0, 42 << 8) + frame, sport, 4789)


def test_a_packet_weird_inside_a_tunnel_is_named_in_tunnel_and_a_connection_weird_is_not(tmp_path):
    """Zeek's session manager appends "_in_tunnel" to a weird a packet analyzer raises about a
    packet inside a tunnel; the weirds of a connection inside it keep their names."""
    short = bytes(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=1000, dport=2000) / b"x")[:16]
    bad_sum = bytes(IP(src="10.1.0.3", dst="10.1.0.4") / UDP(sport=1000, dport=2000, chksum=0x1234) / b"x")
    bad_version = bytes([0x75]) + bytes(IP(src="10.1.0.5", dst="10.1.0.6") / UDP() / (b"x" * 30))[1:]
    frames = [_in_vxlan(_inner_frame(short)), _in_vxlan(_inner_frame(bad_sum)),
              _in_vxlan(_inner_frame(bad_version)), MACS + b"\x08\x00" + bad_version]
    rows, out = record(frames, tmp_path)
    inner = next(r for r in rows if str(r["id.orig_h"]) == "10.1.0.3")
    assert sorted(_weirds(out), key=lambda w: w[5]) == [
        (inner["uid"], "10.1.0.3", 1000, "10.1.0.4", 2000, "bad_UDP_checksum", None, "UDP"),
        (None, None, None, None, None, "truncated_IP_in_tunnel", None, "IP"),
        (None, None, None, None, None, "unknown_ip_version", None, "IP"),         # on the wire: no tunnel
        (None, None, None, None, None, "unknown_ip_version_in_tunnel", None, "IP"),
    ]


def test_empty_and_unreadable_vxlan_and_geneve_headers_are_zeek_s_weirds_about_the_packet(tmp_path):
    vxlan_only = _outer_udp(struct.pack("!BBHI", 8, 0, 0, 42 << 8), 50000, 4789)
    geneve_only = _outer_udp(struct.pack("!BBHI", 1, 0, 0x6558, 7 << 8) + bytes(4), 50001, 6081)
    geneve_v1 = _outer_udp(struct.pack("!BBHI", 0x40, 0, 0x6558, 7 << 8) + _inner_frame(_exchange()[0]), 50002, 6081)
    vxlan_in_vxlan = _in_vxlan(_inner_frame(bytes(IP(src="10.2.0.1", dst="10.2.0.2") / UDP(sport=9, dport=4789)
                                                  / struct.pack("!BBHI", 8, 0, 0, 1 << 8))), 50003)
    rows, out = record([vxlan_only, geneve_only, geneve_v1, vxlan_in_vxlan], tmp_path)
    assert sorted(_weirds(out), key=lambda w: w[5]) == [
        (None, A, 0, B, 0, "geneve_empty_packet", None, "GENEVE"),
        (None, A, 0, B, 0, "geneve_invalid_version", "1", "GENEVE"),
        (None, A, 0, B, 0, "vxlan_empty_packet", None, "VXLAN"),
        (None, "10.2.0.1", 0, "10.2.0.2", 0, "vxlan_empty_packet_in_tunnel", None, "VXLAN"),
    ]
    # Only the VXLAN connection carried by the outer VXLAN was decapsulated; nothing from the empty headers.
    assert [str(r["id.orig_h"]) for r in rows if r["tunnel_parents"]] == ["10.2.0.1"]


def test_gre_weirds_are_about_the_packet_a_gre_tunnel_being_no_connection(tmp_path):
    truncated = _outer_ip(47, struct.pack("!HH", 0x2000, 0x0800) + b"\x00\x00")    # the key cut short
    version_2 = _outer_ip(47, struct.pack("!HH", 0x0002, 0x0800) + _exchange()[0])
    rows, out = record([truncated, version_2], tmp_path)
    assert sorted(_weirds(out), key=lambda w: w[5]) == [
        (None, A, 0, B, 0, "truncated_GRE", None, "GRE"),
        (None, A, 0, B, 0, "unknown_gre_version", None, "GRE"),
    ]


@pytest.mark.parametrize("innermost, name, source, history", [
    ("ip-in-ip", "exceeded_tunnel_max_depth_in_tunnel", "IPTUNNEL", None),
    ("gre-over-udp", "exceeded_tunnel_max_depth_in_tunnel", "IPTUNNEL", "D"),
    ("gtp-u", "tunnel_depth", "GTPV1", "D"),
    ("ayiya", "exceeded_tunnel_max_depth_in_tunnel", "AYIYA", "DX"),
])
def test_the_tunnel_too_deep_names_its_analyzer(tmp_path, innermost, name, source, history):
    """Four VXLAN layers, then one more tunnel of another kind. Each analyzer raises its weird about
    the packet (GTP's about nothing at all), and only some mark their UDP connection's history."""
    ip = _exchange()[0]
    frame = IP_TUNNELS[innermost](ip) if innermost in IP_TUNNELS else UDP_TUNNELS[innermost](ip)
    for i in range(4):
        frame = _outer_udp(struct.pack("!BBHI", 8, 0, 0, 0) + frame, 40000 + i, 4789)
    rows, out = record([frame], tmp_path)
    (weird,) = _weirds(out)
    assert weird[5:] == (name, None, source)
    assert weird[:5] == ((None,) * 5 if source == "GTPV1" else (None, A, 0, B, 0))
    deepest = [r["history"] for r in rows if r["id.resp_p"] in (2152, 4754, 5072)]    # the fifth, a UDP tunnel
    assert deepest == ([] if history is None else [history])


def test_a_connection_that_changes_tunnels_collects_parents_then_X(tmp_path):
    """Requests through one VXLAN connection, replies through another: each
    packet changes the tunnel. Zeek follows 5 changes, then marks history X
    and logs tunnel_max_changes_per_connection_exceeded."""
    c, s = "10.1.0.1", "10.1.0.2"
    frames = []
    for i in range(8):
        req = bytes(IP(src=c, dst=s) / UDP(sport=7000, dport=7001) / b"q")
        rep = bytes(IP(src=s, dst=c) / UDP(sport=7001, dport=7000) / b"r")
        frames.append(_outer_udp(struct.pack("!BBHI", 8, 0, 0, 0) + _inner_frame(req), 50000, 4789))
        frames.append(MACS + b"\x08\x00" + bytes(IP(src=B, dst=A) / UDP(sport=50001, dport=4789)
                                                 / (struct.pack("!BBHI", 8, 0, 0, 0) + _inner_frame(rep))))
    rows, out = record(frames, tmp_path)
    inner = next(r for r in rows if str(r["id.orig_h"]) == c)
    outers = {r["uid"] for r in rows if r["id.resp_p"] == 4789}
    assert len(outers) == 2 and set(inner["tunnel_parents"]) == outers
    assert inner["history"] == "DdX"
    assert [w["name"] for w in list(read_log(out / "weird.log")[1])] == ["tunnel_max_changes_per_connection_exceeded"]


def test_ipv6_outer_and_inner(tmp_path):
    """IPv6 in IPv6 (next header 41) and IPv4 in a VXLAN over IPv6."""
    inner6 = bytes(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1000, dport=2000) / b"x")
    inner4 = bytes(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=1000, dport=2000) / b"x")
    six_in_six = MACS + b"\x86\xdd" + bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=41) / inner6)
    vxlan6 = MACS + b"\x86\xdd" + bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=4789)
                                        / (struct.pack("!BBHI", 8, 0, 0, 0) + _inner_frame(inner4)))
    rows, _ = record([six_in_six, vxlan6], tmp_path)
    got = {(str(r["id.orig_h"]), r["proto"], r["tunnel_parents"] is not None) for r in rows}
    assert got == {("fd00::1", "udp", True), ("10.1.0.1", "udp", True), ("2001:db8::1", "udp", False)}


def test_capture_stats_count_a_tunnelled_packet_once(tmp_path):
    rows, out = record([_vxlan(ip) for ip in _exchange()], tmp_path)
    stats = list(read_log(out / "capture_stats.log")[1])[-1]
    assert stats["packets"] == len(_exchange())


def test_tunnel_log_discovers_each_tunnel_and_closes_udp_ones(tmp_path):
    """tunnel.log as Zeek's tunnels framework writes it: DISCOVER when a tunnel
    carries its first connection, CLOSE when a UDP tunnel's connection ends;
    an IP tunnel is its address pair, ports 0."""
    frames = [_vxlan(ip) for ip in _exchange()] + [_gre(ip) for ip in _exchange()] + \
        [_ipip(ip) for ip in _exchange()]
    rows, out = record(frames, tmp_path)
    tunnels = list(read_log(out / "tunnel.log")[1])
    got = sorted((t["tunnel_type"], t["action"], str(t["id.orig_h"]), t["id.orig_p"], t["id.resp_p"])
                 for t in tunnels)
    assert got == [("Tunnel::GRE", "Tunnel::DISCOVER", A, 0, 0),
                   ("Tunnel::VXLAN", "Tunnel::CLOSE", A, 50000, 4789),
                   ("Tunnel::VXLAN", "Tunnel::DISCOVER", A, 50000, 4789)]
    vxlan_uid = next(r["uid"] for r in rows if r["id.resp_p"] == 4789)
    gre_uid = next(t["uid"] for t in tunnels if t["tunnel_type"] == "Tunnel::GRE")
    parents = {p for r in rows if r["tunnel_parents"] for p in r["tunnel_parents"]}
    assert parents == {vxlan_uid, gre_uid}     # IP-in-IP between the same pair is the GRE tunnel, as in Zeek


def test_teredo_carries_ipv6_and_its_bubbles_make_no_connection(tmp_path):
    """Teredo (UDP 3544): IPv6 after an origin indication. A bubble (an IPv6
    header with no next header and no payload) keeps the NAT mapping open and
    is no connection, for Zeek either."""
    six = [ip for ip in _exchange() if ip[0] >> 4 == 6]
    bubble = bytes(IPv6(src="2001:0:4137:9e50::1", dst="2001:0:4137:9e50::2", nh=59))
    rows, out = record([_teredo(ip) for ip in six] + [_teredo(bubble)], tmp_path)
    outer = [r for r in rows if r["id.resp_p"] == 3544]
    inner = [r for r in rows if r is not outer[0]]
    assert len(outer) == 1 and outer[0]["orig_pkts"] == 3
    assert [(str(r["id.orig_h"]), r["proto"]) for r in inner] == [("fd00::1", "udp")]
    assert list(inner[0]["tunnel_parents"]) == [outer[0]["uid"]]
    assert [t["tunnel_type"] for t in read_log(out / "tunnel.log")[1]] == ["Tunnel::TEREDO", "Tunnel::TEREDO"]
    assert list(read_log(out / "weird.log")[1]) == []


def test_a_teredo_relay_whose_first_packet_is_a_bubble_with_bytes_after_it_is_found(tmp_path):
    """Away from port 3544 Teredo is found by Zeek's DetectProtocol, whose pattern looks at the first
    40 bytes only: a relay's first packet, a bubble with four bytes after it (Zeek's
    teredo_bubble_with_payload trace), makes the connection Teredo, and the IPv6 that follows in it is
    decapsulated. Each such bubble raises Teredo_bubble_with_payload about the outer connection;
    weird.log gets it once (Zeek's weird_ignore)."""
    client, relay = "2001:0:4137:9e50:8000:f12a:b9c8:2815", "2001:4860:0:2001::68"
    bubble = bytes(IPv6(src=client, dst=relay, nh=59)) + b"1234"
    reply = bytes(IPv6(src=relay, dst=client) / UDP(sport=80, dport=1286) / b"answer")
    rows, out = record([_outer_udp(bubble, 3797, 32900), _outer_udp(bubble, 3797, 32900),
                        _outer_udp(reply, 3797, 32900)], tmp_path)
    outer = [r for r in rows if r["id.resp_p"] == 32900]
    inner = [r for r in rows if str(r["id.orig_h"]) not in (A, B)]
    assert len(outer) == 1 and outer[0]["orig_pkts"] == 3
    assert [(str(r["id.resp_h"]), r["id.resp_p"]) for r in inner] == [(client, 1286)]
    assert list(inner[0]["tunnel_parents"]) == [outer[0]["uid"]]
    weirds = [(w["uid"], str(w["id.orig_h"]), w["id.orig_p"], str(w["id.resp_h"]), w["id.resp_p"], w["name"],
               w["source"]) for w in read_log(out / "weird.log")[1]]
    assert weirds == [(outer[0]["uid"], A, 3797, B, 32900, "Teredo_bubble_with_payload", "TEREDO")]


def test_a_tunnel_is_discovered_when_a_connection_is_made_inside_it(tmp_path):
    """Zeek's tunnels framework logs a tunnel when a connection inside it appears (new_connection):
    a VXLAN connection that carries only ARP is a conn.log row and no tunnel.log row; another one's
    DISCOVER has the time of the first inner packet that made a connection, not of its first packet."""
    arp = MACS + b"\x08\x06" + bytes.fromhex("0001080006040001") + bytes(20)
    vxlan_hdr = struct.pack("!BBHI", 0x08, 0, 0, 42 << 8)
    inner = bytes(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=7000, dport=7001) / b"q")
    frames = [_outer_udp(vxlan_hdr + arp, 50000, 4789),
              _outer_udp(vxlan_hdr + arp, 50002, 4789),
              _outer_udp(vxlan_hdr + _inner_frame(inner), 50002, 4789)]
    rows, out = record(frames, tmp_path)
    assert sorted(r["id.orig_p"] for r in rows if r["id.resp_p"] == 4789) == [50000, 50002]
    carrier = next(r for r in rows if r["id.orig_p"] == 50002)
    tunnels = [(t["ts"], t["uid"], t["action"]) for t in read_log(out / "tunnel.log")[1]]
    assert [t[1:] for t in tunnels] == [(carrier["uid"], "Tunnel::DISCOVER"), (carrier["uid"], "Tunnel::CLOSE")]
    assert tunnels[0][0] == pytest.approx(1_700_000_000.02)      # the third frame's time


def test_a_connection_that_moves_into_a_tunnel_announces_it(tmp_path):
    """Zeek's tunnel_changed registers the new tunnel too: a connection made outside any tunnel whose
    later packets come through VXLAN makes that tunnel's DISCOVER, at the first of them."""
    req = bytes(IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=7000, dport=7001) / b"q")
    rows, out = record([_inner_frame(req), _vxlan(req)], tmp_path)
    vxlan = next(r for r in rows if r["id.resp_p"] == 4789)
    tunnels = [(t["ts"], t["uid"], t["action"]) for t in read_log(out / "tunnel.log")[1]]
    assert [t[1:] for t in tunnels] == [(vxlan["uid"], "Tunnel::DISCOVER"), (vxlan["uid"], "Tunnel::CLOSE")]
    assert tunnels[0][0] == pytest.approx(1_700_000_000.01)


def test_ipv6_no_next_header_is_no_connection(tmp_path):
    """Zeek's IP analyzer makes no connection of IPv6 with no next header (59)."""
    lone = MACS + b"\x86\xdd" + bytes(IPv6(src="fd00::1", dst="fd00::2", nh=59))
    rows, out = record([lone], tmp_path)
    assert rows == []
    assert list(read_log(out / "capture_stats.log")[1])[-1]["packets"] == 1


def test_a_connection_in_and_out_of_its_tunnel_counts_each_change(tmp_path):
    """Requests through VXLAN, replies straight: leaving the tunnel is a change
    too (Zeek's tunnel_changed with an empty encapsulation), with no parent."""
    c, s = "10.1.0.1", "10.1.0.2"
    frames = []
    for _ in range(4):
        req = bytes(IP(src=c, dst=s) / UDP(sport=7000, dport=7001) / b"q")
        rep = bytes(IP(src=s, dst=c) / UDP(sport=7001, dport=7000) / b"r")
        frames += [_vxlan(req), _inner_frame(rep)]
    rows, out = record(frames, tmp_path)
    inner = next(r for r in rows if str(r["id.orig_h"]) == c)
    vxlan = next(r for r in rows if r["id.resp_p"] == 4789)
    assert list(inner["tunnel_parents"]) == [vxlan["uid"]]
    assert inner["history"] == "DdX"


def _length_claims(ip: bytes, length: int) -> bytes:
    """An IP packet whose header claims another length (IPv4 total, IPv6 payload)."""
    if ip[0] >> 4 == 4:
        return ip[:2] + length.to_bytes(2, "big") + ip[4:]
    return ip[:4] + length.to_bytes(2, "big") + ip[6:]


def test_an_ip_in_ip_inner_header_that_does_not_fit_its_outer_payload_opens_no_tunnel(tmp_path):
    """Zeek's IPTunnel analyzer checks the inner header before it opens a tunnel: its total length
    must be the outer payload's (truncated_inner_IP if longer, inner_IP_payload_length_mismatch if
    shorter), its version the one the outer protocol names (invalid_inner_IP_version). Each is a
    weird about the outer packet (its addresses, ports 0) and the inner packet goes no further."""
    v4 = bytes(IP(src="10.2.0.1", dst="10.2.0.2") / UDP(sport=1000, dport=2000) / b"x")
    v6 = bytes(IPv6(src="fd02::1", dst="fd02::2") / UDP(sport=1001, dport=2001) / b"y")
    frames = [
        _outer_ip(4, _length_claims(v4, len(v4) + 20)),            # claims more than the tunnel holds
        _outer_ip(41, _length_claims(v6, len(v6) - 40 - 4)),       # claims less
        _outer_ip(41, bytes(IP(src="10.2.0.5", dst="10.2.0.6") / UDP() / (b"w" * 40))),  # IPv4 where IPv6 is named
        _outer_ip(4, bytes(IP(src="10.2.0.3", dst="10.2.0.4") / UDP(sport=1002, dport=2002) / b"z")),
    ]
    rows, out = record(frames, tmp_path)
    assert [(str(r["id.orig_h"]), r["id.resp_p"]) for r in rows] == [("10.2.0.3", 2002)]
    assert sorted(_weirds(out), key=lambda w: w[5]) == [
        (None, A, 0, B, 0, "inner_IP_payload_length_mismatch", None, "IPTUNNEL"),
        (None, A, 0, B, 0, "invalid_inner_IP_version", None, "IPTUNNEL"),
        (None, A, 0, B, 0, "truncated_inner_IP", None, "IPTUNNEL"),
    ]
    tunnels = [(t["tunnel_type"], t["action"]) for t in read_log(out / "tunnel.log")[1]]
    assert tunnels.count(("Tunnel::IP", "Tunnel::DISCOVER")) == 1     # the good one only
