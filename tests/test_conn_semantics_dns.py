"""dns.log answers for MX, PTR and SRV records, on a crafted pcap, and the
conn.log rows those transactions make.

Zeek's base/protocols/dns/main.zeek logs, per answer, the name its event
carries: dns_MX_reply's exchange name, dns_PTR_reply's name, dns_SRV_reply's
target (preference, priority, weight and port are not logged). TTLs are
intervals; the UDP connection is SF with history Dd and the service dns.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from frames import ether
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX, DNSRRSRV
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw
from scapy.utils import wrpcap

from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root]

CLI = str(Path(sys.executable).with_name("cicd-audit"))
CLIENT, RESOLVER = "10.3.0.1", "10.3.0.53"
T0 = 1_700_000_000.0

TRANSACTIONS = {
    # client port: (qname, qtype, answer records)
    41001: ("example.com", "MX", [DNSRRMX(rrname="example.com", ttl=300, preference=10, exchange="mx1.example.com"),
                                  DNSRRMX(rrname="example.com", ttl=300, preference=20, exchange="mx2.example.com")]),
    41002: ("4.3.2.1.in-addr.arpa", "PTR", [DNSRR(rrname="4.3.2.1.in-addr.arpa", type="PTR", ttl=3600,
                                                  rdata="host.example.com")]),
    41003: ("_sip._udp.example.com", "SRV", [DNSRRSRV(rrname="_sip._udp.example.com", ttl=60, priority=1, weight=5,
                                                      port=5060, target="sip.example.com")]),
}


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dns-answers")
    packets, t = [], T0
    for cport, (qname, qtype, answers) in TRANSACTIONS.items():
        query = DNS(id=cport & 0xffff, rd=1, qd=DNSQR(qname=qname, qtype=qtype))
        reply = DNS(id=cport & 0xffff, qr=1, rd=1, ra=1, qd=DNSQR(qname=qname, qtype=qtype), an=answers)
        q = ether() / IP(src=CLIENT, dst=RESOLVER) / UDP(sport=cport, dport=53) / query
        r = ether() / IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=cport) / reply
        q.time, r.time = t, t + 0.002
        packets += [q, r]
        t += 1
    pcap = tmp / "dns.pcap"
    wrpcap(str(pcap), packets)
    out = tmp / "out"
    r = subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    dns = {row["id.orig_p"]: row for row in read_log(out / "dns.log")[1]}
    conn = {row["id.orig_p"]: row for row in read_log(out / "conn.log")[1]}
    return dns, conn


@pytest.mark.parametrize("cport, qtype, answers, ttls", [
    (41001, 15, ["mx1.example.com", "mx2.example.com"], [300, 300]),
    (41002, 12, ["host.example.com"], [3600]),
    (41003, 33, ["sip.example.com"], [60]),
], ids=["MX", "PTR", "SRV"])
def test_answers(logs, cport, qtype, answers, ttls):
    dns, conn = logs
    row = dns[cport]
    assert (row["query"], row["qtype"], row["qtype_name"]) == (TRANSACTIONS[cport][0], qtype, TRANSACTIONS[cport][1])
    assert (row["rcode_name"], row["AA"], row["RD"], row["RA"], row["rejected"]) == ("NOERROR", False, True, True,
                                                                                      False)
    assert list(row["answers"]) == answers
    assert list(row["TTLs"]) == [float(s) for s in ttls]
    assert row["uid"] == conn[cport]["uid"]


def test_conn_rows(logs):
    _, conn = logs
    for cport in TRANSACTIONS:
        row = conn[cport]
        assert (row["id.resp_h"], row["id.resp_p"], row["proto"]) == (RESOLVER, 53, "udp")
        assert (row["conn_state"], row["history"], row["service"]) == ("SF", "Dd", "dns")
        assert (row["orig_pkts"], row["resp_pkts"]) == (1, 1)


def _record(tmp_path: Path, packets: list) -> Path:
    """Record these packets from a pcap; returns the logs' directory."""
    wrpcap(str(tmp_path / "in.pcap"), packets)
    out = tmp_path / "out"
    res = subprocess.run([CLI, "record", "--pcap", str(tmp_path / "in.pcap"), "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return out


def test_unknown_opcode_is_history_X_and_no_dns_row(tmp_path):
    """DNS.cc ParseMessage: an opcode other than QUERY, NOTIFY and UPDATE (here
    STATUS, 2) is a weird and the analyzer-limit letter 'X' (connection-level,
    once), after the UDP adapter's 'D'/'d'; the message makes no dns.log row."""
    q = ether() / IP(src=CLIENT, dst=RESOLVER) / UDP(sport=41010, dport=53) / DNS(id=7, opcode=2, qd=[])
    r = ether() / IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=41010) / DNS(id=7, qr=1, opcode=2, qd=[])
    q.time, r.time = T0, T0 + 0.001
    out = _record(tmp_path, [q, r])
    conn = list(read_log(out / "conn.log")[1])
    assert [(c["history"], c["conn_state"]) for c in conn] == [("DXd", "SF")]
    assert not list(read_log(out / "dns.log")[1])


def test_a_limit_the_dns_parser_reaches_is_history_X_where_it_happened(tmp_path):
    """DNS.cc's LimitReachedWeird adds 'X' (once) when a message has more questions than
    dns_max_queries (25) or a name deeper in compression pointers than
    dns_max_compression_chain_depth (20). User space finds these while parsing; the letter goes
    where the connection's history stood at that message: after the query's 'D' and before the
    reply's 'd' (as in Zeek's dns max-queries btest, here with a reply), and after the '^' of the
    flip the same message made (a response from the originator, as in its max-compression-depth
    btest)."""
    many = [DNSQR(qname=f"q{i}.example.com") for i in range(26)]
    q = ether() / IP(src=CLIENT, dst=RESOLVER) / UDP(sport=41020, dport=53) / DNS(id=9, qd=many)
    r = ether() / IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=41020) / DNS(id=9, qr=1, qd=many)
    # A response from the client: 23 questions, each name a pointer to the one before (Zeek follows
    # only pointers backwards), so the last ones are 21 and 22 pointers deep.
    questions, at = b"\x01a\x00" + struct.pack("!HH", 1, 1), [12]
    for _ in range(22):
        questions += struct.pack("!HHH", 0xC000 | at[-1], 1, 1)
        at.append(12 + len(questions) - 6)
    chained = struct.pack("!6H", 10, 0x8180, 23, 0, 0, 0) + questions
    loop = ether() / IP(src=CLIENT, dst=RESOLVER) / UDP(sport=41021, dport=53) / Raw(chained)
    q.time, r.time, loop.time = T0, T0 + 0.001, T0 + 1
    out = _record(tmp_path, [q, r, loop])
    conn, weird = list(read_log(out / "conn.log")[1]), list(read_log(out / "weird.log")[1])
    history = {(c["id.orig_p"], c["id.resp_p"]): c["history"] for c in conn}
    assert history == {(41020, 53): "DXd", (53, 41021): "D^X"}
    names = sorted(w["name"] for w in weird)
    # The query's count (the reply goes unparsed: the analyzer was removed), then one per name too
    # deep: two raised, one row, as Zeek's weird_ignore logs a name once per connection in ten minutes.
    assert names == ["DNS_Conn_count_too_large", "DNS_max_compression_chain_depth_exceeded"]
    assert list(read_log(out / "capture_stats.log")[1])[-1]["weirds"] == 3
