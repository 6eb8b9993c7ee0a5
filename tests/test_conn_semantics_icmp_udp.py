"""conn.log for ICMP, the UDP analyzer flips, likely_server_ports and
community_id: crafted pcaps and unit checks against Zeek 9.1's semantics.

ICMP (packet_analysis/protocol/icmp/ICMP.cc): the key's ports are the type
and its counterpart type, so a request and its reply are one connection;
a type without a counterpart is "one-way": its second port is the code and
the key is not put in canonical order, so each direction is a connection of
its own. conn_state is OTH, history '-', and the sizes are the IP payload
lengths less the 8-byte ICMP header.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from frames import ether
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.packet import Raw
from scapy.utils import wrpcap
from shared_data import shared

from cicd_audit.recorder.kernel.zeek_defaults import (
    DEFAULT_LIKELY_SERVER_PORTS,
    LikelyServerPortsError,
    parse_likely_server_ports,
)
from cicd_audit.recorder.logs.conn_rows import community_id
from cicd_audit.zeeklog.reader import read_log

CLI = str(Path(sys.executable).with_name("cicd-audit"))
ORACLE = shared("zeek-oracle")
A, B = "10.2.0.1", "10.2.0.2"
A6, B6 = "2001:db8:2::1", "2001:db8:2::2"
T0 = 1_700_000_000.0


def record(pcap: Path, out: Path, *extra: str) -> list[dict]:
    r = subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress", *extra],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return list(read_log(out / "conn.log")[1])


def _at(pkt, t):
    pkt.time = t
    return pkt


@pytest.fixture(scope="module")
def icmp_rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("icmp")
    packets = [
        _at(ether() / IP(src=A, dst=B) / ICMP(type=8, id=7, seq=1) / Raw(b"p" * 56), T0),
        _at(ether() / IP(src=B, dst=A) / ICMP(type=0, id=7, seq=1) / Raw(b"p" * 56), T0 + 0.01),
        # destination unreachable (3), port unreachable (3), in both directions
        _at(ether() / IP(src=A, dst=B) / ICMP(type=3, code=3) / Raw(b"u" * 28), T0 + 1),
        _at(ether() / IP(src=B, dst=A) / ICMP(type=3, code=3) / Raw(b"u" * 28), T0 + 1.5),
        _at(ether() / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=9, data=b"q" * 32), T0 + 2),
        _at(ether() / IPv6(src=B6, dst=A6) / ICMPv6EchoReply(id=9, data=b"q" * 32), T0 + 2.01),
    ]
    wrpcap(str(tmp / "icmp.pcap"), packets)
    return record(tmp / "icmp.pcap", tmp / "out", "--community-id")


def _key(row):
    return (row["id.orig_h"], row["id.orig_p"], row["id.resp_h"], row["id.resp_p"])


@pytest.mark.root
def test_icmp_echo_is_one_connection(icmp_rows):
    rows = [r for r in icmp_rows if _key(r) == (A, 8, B, 0)]
    assert len(rows) == 1, icmp_rows
    r = rows[0]
    assert (r["proto"], r["ip_proto"], r["conn_state"], r["history"]) == ("icmp", 1, "OTH", None)
    assert (r["orig_bytes"], r["resp_bytes"]) == (56, 56)
    assert (r["orig_pkts"], r["orig_ip_bytes"], r["resp_pkts"], r["resp_ip_bytes"]) == (1, 84, 1, 84)


@pytest.mark.root
def test_one_way_icmp_is_a_connection_per_direction(icmp_rows):
    keys = sorted(_key(r) for r in icmp_rows if r["id.orig_p"] == 3)
    assert keys == [(A, 3, B, 3), (B, 3, A, 3)]
    for r in icmp_rows:
        if r["id.orig_p"] == 3:
            assert (r["orig_pkts"], r["resp_pkts"], r["duration"]) == (1, 0, None)


@pytest.mark.root
def test_icmpv6_echo(icmp_rows):
    rows = [r for r in icmp_rows if r["id.orig_h"] == A6]
    assert len(rows) == 1
    r = rows[0]
    assert (r["id.orig_p"], r["id.resp_p"], r["proto"], r["ip_proto"]) == (128, 129, "icmp", 58)
    assert (r["orig_bytes"], r["resp_bytes"]) == (32, 32)       # IP payload less the 8-byte echo header
    assert r["community_id"] == community_id(A6, 128, B6, 129, 58)


@pytest.mark.root
def test_dns_reply_only_flip_counts_the_packet_with_the_old_role(tmp_path):
    """Oracle trace dns-reply-only-flip (zeek -b, DNS scripts): one response
    53 -> 53, both ports likely, so no flip at creation; the UDP adapter adds
    'D' for the sender, then the DNS analyzer flips ('^'), then ConnSize
    counts the packet with the stale role, which is now the other host's."""
    rows = record(ORACLE / "dns-reply-only-flip" / "trace.pcap", tmp_path, "--likely-server-ports", "bare,dns")
    assert len(rows) == 1
    r = rows[0]
    assert (r["id.orig_h"], r["id.resp_h"]) == ("10.20.1.31", "207.158.192.40")
    assert (r["history"], r["conn_state"]) == ("D^", "S0")
    assert (r["orig_pkts"], r["orig_ip_bytes"], r["resp_pkts"], r["resp_ip_bytes"]) == (1, 461, 0, 0)


@pytest.mark.root
def test_likely_server_ports_decide_the_originator(tmp_path):
    """A UDP packet from 5060 (SIP, a likely server port by default) to a
    high port is flipped: the receiver is the originator. With only the
    packet-protocol ports (zeek -b) it is not."""
    pcap = tmp_path / "sip.pcap"
    wrpcap(str(pcap), [_at(ether() / IP(src=B, dst=A) / UDP(sport=5060, dport=40000) / Raw(b"x" * 10), T0)])
    default = record(pcap, tmp_path / "default")
    bare = record(pcap, tmp_path / "bare", "--likely-server-ports", "bare")
    with_sip = record(pcap, tmp_path / "sip", "--likely-server-ports", "bare,sip")
    assert [(r["id.orig_h"], r["history"]) for r in default] == [(A, "^d")]
    assert [(r["id.orig_h"], r["history"]) for r in bare] == [(B, "D")]
    assert [(r["id.orig_h"], r["history"]) for r in with_sip] == [(A, "^d")]


def test_community_id_matches_zeeks_oracle():
    for case in ("icmp4-echo-keys", "udp-dns-keys", "tcp-ipv6-keys"):
        lines = (ORACLE / case / "expected_conn_ids.tsv").read_text().splitlines()
        names = lines[0].split("\t")
        for line in lines[1:]:
            row = dict(zip(names, line.split("\t")))
            got = community_id(row["id.orig_h"], int(row["id.orig_p"]), row["id.resp_h"], int(row["id.resp_p"]),
                               int(row["ip_proto"]))
            assert got == row["community_id"], (case, row)


def test_community_id_is_direction_free_except_one_way_icmp():
    assert community_id(A, 1234, B, 80, 6) == community_id(B, 80, A, 1234, 6)
    assert community_id(A, 8, B, 0, 1) == community_id(B, 0, A, 8, 1)
    assert community_id(A, 3, B, 3, 1) != community_id(B, 3, A, 3, 1)
    # unknown IP protocols hash no ports
    assert community_id(A, 0, B, 0, 47) == community_id(A, 5, B, 9, 47)


def test_parse_likely_server_ports():
    assert parse_likely_server_ports("default") == DEFAULT_LIKELY_SERVER_PORTS
    bare = parse_likely_server_ports("bare")
    assert bare == {(p, "udp") for p in (2123, 2152, 3544, 4754, 4789, 5072, 6081)}
    assert parse_likely_server_ports("bare, http,40190/udp") == bare | {
        (80, "tcp"), (81, "tcp"), (631, "tcp"), (1080, "tcp"), (3128, "tcp"), (8000, "tcp"), (8080, "tcp"),
        (8888, "tcp"), (40190, "udp")}
    assert len([p for p in DEFAULT_LIKELY_SERVER_PORTS if p[1] == "tcp"]) == 49
    assert len([p for p in DEFAULT_LIKELY_SERVER_PORTS if p[1] == "udp"]) == 24
    # Protocol scripts Zeek loads that register no ports (POP3, NTLM, RFB, WebSocket: DPD only)
    # are accepted and add nothing: `zeek -b` with base/protocols/pop3 loaded is plain bare.
    assert parse_likely_server_ports("bare,pop3,ntlm,rfb,websocket") == bare
    for bad in ("", "htp", "80", "80/sctp", "70000/tcp"):
        with pytest.raises(LikelyServerPortsError):
            parse_likely_server_ports(bad)
