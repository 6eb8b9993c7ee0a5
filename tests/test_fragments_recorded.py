"""Fragmented datagrams, recorded: from a pcap and live at TC, the datagram is
reassembled in user space and runs through the same kernel program, so
conn.log and dns.log read as Zeek writes them (one packet per datagram, its
whole length) and capture_stats.log counts the fragments on the wire.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from frames import ether
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.utils import wrpcap

from cicd_audit.lab import CICD_AUDIT, V4, V6
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root]

T0 = 1_700_000_000.0


def record(pcap: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CICD_AUDIT, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=300)


def rows(out: Path, name: str) -> list[dict]:
    return list(read_log(out / f"{name}.log")[1])


def without_uid(rs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "uid"} for r in rs]


def _big_txt_exchange(v6: bool):
    """A query and an answer of about 2.7 KB (TXT padding, as DNSSEC or EDNS0 answers are)."""
    q = DNS(id=9, rd=1, qd=DNSQR(qname="big.example", qtype="TXT"))
    txt = [b"x" * 200] * 13
    a = DNS(id=9, qr=1, aa=1, qd=DNSQR(qname="big.example", qtype="TXT"),
            an=DNSRR(rrname="big.example", type="TXT", rdata=txt))
    if v6:
        c, s = IPv6(src="2001:db8::1", dst="2001:db8::53"), IPv6(src="2001:db8::53", dst="2001:db8::1")
    else:
        c, s = IP(src="192.0.2.1", dst="192.0.2.53", id=1), IP(src="192.0.2.53", dst="192.0.2.1", id=77)
    return c / UDP(sport=40000, dport=53) / q, s / UDP(sport=53, dport=40000) / a


def _frames(query, answer, fragmented: bool, v6: bool) -> list:
    query, answer = ether() / query, ether() / answer
    query.time, answer.time = T0, T0 + 0.25
    if not fragmented:
        return [query, answer]
    if v6:
        ip = answer[IPv6]
        with_header = IPv6(src=ip.src, dst=ip.dst) / IPv6ExtHdrFragment(id=5) / ip.payload
        pieces = [ether() / p for p in fragment6(with_header, 1280)]
    else:
        pieces = [ether() / p for p in fragment(answer[IP], fragsize=1000)]
    pieces.reverse()                     # out of order, as the wire may deliver them
    for p in pieces:
        p.time = T0 + 0.25
    return [query, *pieces]


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_a_fragmented_dns_answer_logs_as_the_whole_one(tmp_path, v6):
    query, answer = _big_txt_exchange(v6)
    whole, split = tmp_path / "whole.pcap", tmp_path / "split.pcap"
    wrpcap(str(whole), _frames(query, answer, False, v6))
    frames = _frames(query, answer, True, v6)
    assert len(frames) >= 4
    wrpcap(str(split), frames)
    for pcap in (whole, split):
        r = record(pcap, tmp_path / pcap.stem)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    dns_whole, dns_split = rows(tmp_path / "whole", "dns"), rows(tmp_path / "split", "dns")
    assert len(dns_whole) == 1 and dns_whole[0]["qtype_name"] == "TXT" and len(dns_whole[0]["answers"]) == 1
    assert without_uid(dns_split) == without_uid(dns_whole)
    # Zeek counts the reassembled datagram once, with its whole length.
    assert without_uid(rows(tmp_path / "split", "conn")) == without_uid(rows(tmp_path / "whole", "conn"))
    stats = rows(tmp_path / "split", "capture_stats")[0]
    assert (stats["packets"], stats["fragments"], stats["fragments_lost"]) == (len(frames), len(frames) - 1, 0)
    assert rows(tmp_path / "whole", "capture_stats")[0]["packets"] == 2


def test_an_unfinished_datagram_is_counted_lost(tmp_path):
    query, answer = _big_txt_exchange(False)
    frames = _frames(query, answer, True, False)
    pcap = tmp_path / "lost.pcap"
    wrpcap(str(pcap), frames[:-1])         # the first fragment (offset 0; frames are reversed) never came
    r = record(pcap, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    stats = rows(tmp_path / "out", "capture_stats")[0]
    assert (stats["fragments"], stats["fragments_lost"]) == (len(frames) - 2, len(frames) - 2)
    assert rows(tmp_path / "out", "dns")[0]["answers"] is None


ECHO_BIGGER = """
import socket, sys
family, addr = (socket.AF_INET6, sys.argv[1]) if ":" in sys.argv[1] else (socket.AF_INET, sys.argv[1])
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((addr, 7007))
print("ready", flush=True)
for _ in range(2):
    data, peer = s.recvfrom(65535)
    s.sendto(b"r" * (len(data) + 1000), peer)
"""
SEND_BIG = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"q" * 4000, (sys.argv[1], 7007))
print(len(s.recv(65535)))
"""


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_live_datagrams_larger_than_the_mtu_are_one_packet_each_way(lab, tmp_path, family):
    """4,000 bytes out and 5,000 back over a 1,500-byte MTU: fragmented by the
    sender's stack after the socket hooks, so TC sees only fragments, both ways."""
    server_addr = V4[1] if family == "ipv4" else V6[1]
    server = lab.popen(lab.server_ns, [sys.executable, "-c", ECHO_BIGGER, server_addr],
                       stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    r = lab.record(tmp_path, [sys.executable, "-c", SEND_BIG, server_addr])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "5000"
    conns = [c for c in rows(tmp_path, "conn") if c["id.resp_p"] == 7007]
    assert len(conns) == 1, conns
    conn = conns[0]
    header = 20 if family == "ipv4" else 40
    assert (conn["orig_pkts"], conn["orig_bytes"], conn["orig_ip_bytes"]) == (1, 4000, header + 8 + 4000)
    assert (conn["resp_pkts"], conn["resp_bytes"], conn["resp_ip_bytes"]) == (1, 5000, header + 8 + 5000)
    assert conn["proc.name"].startswith("python"), "the datagram keeps its process"
    stats = rows(tmp_path, "capture_stats")[0]
    assert stats["fragments"] >= 3 + 4 and stats["fragments_lost"] == 0
