"""conn.log TCP semantics the Zeek oracle does not cover, on crafted pcaps.

Each scenario is one TCP connection built with scapy; all of them go into
one capture (distinct ports, time-ordered), recorded once by
`cicd-audit record --pcap`. The expected rows follow Zeek 9.1's logic
(TCPSessionAdapter.cc UpdateStateMachine, TCP_Reassembler.cc for gaps,
conn/main.zeek conn_state, conn/inactivity.zeek), worked through by hand in
each scenario's comment.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from capture_builders import pcap as pcap_file
from frames import ether
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.packet import Raw
from scapy.utils import wrpcap

from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root]

CLI = str(Path(sys.executable).with_name("cicd-audit"))
CLIENT, SERVER = "10.1.0.1", "10.1.0.2"
CLIENT6, SERVER6 = "2001:db8::1", "2001:db8::2"
T0 = 1_700_000_000.0


class Flow:
    """Packets of one TCP connection with sequence numbers kept per side."""

    def __init__(self, cport: int, sport: int, t: float, v6_ext: bool = False):
        self.cport, self.sport, self.t = cport, sport, t
        self.seq = {"c": 1000, "s": 5000}
        self.v6_ext = v6_ext
        self.packets = []

    def send(self, side: str, flags: str, data: bytes = b"", dt: float = 0.01, seq: int | None = None,
             ack: int | None = None, advance: bool = True):
        self.t += dt
        other = "s" if side == "c" else "c"
        if self.v6_ext:
            src, dst = (CLIENT6, SERVER6) if side == "c" else (SERVER6, CLIENT6)
            ip = IPv6(src=src, dst=dst) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        else:
            src, dst = (CLIENT, SERVER) if side == "c" else (SERVER, CLIENT)
            ip = IP(src=src, dst=dst)
        sport, dport = (self.cport, self.sport) if side == "c" else (self.sport, self.cport)
        s = self.seq[side] if seq is None else seq
        a = self.seq[other] if ack is None else ack
        pkt = ether() / ip / TCP(sport=sport, dport=dport, flags=flags, seq=s, ack=a if "A" in flags else 0)
        if data:
            pkt = pkt / Raw(data)
        pkt.time = self.t
        self.packets.append(pkt)
        if advance:
            self.seq[side] = s + len(data) + ("S" in flags) + ("F" in flags)
        return self

    def handshake(self):
        return self.send("c", "S").send("s", "SA").send("c", "A")


def write_capture(flows, pcap: Path) -> Path:
    """The flows' packets, in time order, as one classic pcap."""
    wrpcap(str(pcap), sorted((p for flow in flows for p in flow.packets), key=lambda p: float(p.time)))
    return pcap


def scenarios() -> dict[str, Flow]:
    f = {}
    # S2: the originator closed, the responder is still established.
    f["S2"] = Flow(40001, 7001, T0).handshake().send("c", "PA", b"x" * 10).send("s", "A").send("c", "FA")
    # S3: the responder closed, the originator is still established.
    f["S3"] = Flow(40002, 7002, T0 + 1).handshake().send("c", "PA", b"x" * 10).send("s", "A").send("s", "FA")
    # SH: a SYN and then the originator's FIN, nothing from the responder.
    f["SH"] = Flow(40003, 7003, T0 + 2).send("c", "S").send("c", "F")
    # The first packet is a SYN-ACK from 80 (a likely server port) to a port that is
    # not one: flipped at creation ('^'), the server is the responder ('h').
    # RSTRH: then the server resets; the originator never sent anything.
    f["RSTRH"] = Flow(40004, 80, T0 + 3).send("s", "SA").send("s", "R")
    # SHR: the same start, then the server's FIN.
    f["SHR"] = Flow(40005, 80, T0 + 4).send("s", "SA").send("s", "FA")
    # A content gap: bytes 11..20 of the originator's data are acknowledged but never
    # seen ('G', missed_bytes 10); the close completes normally (SF).
    gap = Flow(40006, 7006, T0 + 5).handshake().send("c", "PA", b"a" * 10).send("s", "A")
    gap.seq["c"] += 10                                   # 10 bytes lost before capture
    gap.send("c", "PA", b"b" * 10).send("s", "A").send("c", "FA").send("s", "FA").send("c", "A")
    f["gap"] = gap
    # TCP over IPv6 with hop-by-hop and destination-options headers.
    f["ipv6-ext"] = (Flow(40007, 7007, T0 + 6, v6_ext=True).handshake().send("c", "PA", b"q" * 20)
                     .send("s", "PA", b"r" * 30).send("c", "FA").send("s", "FA").send("c", "A"))
    # Interactive port (22/tcp): Conn::port_inactivity_timeouts keeps the
    # connection through 400 s of silence (tcp_inactivity_timeout is 300 s) ...
    f["ssh-idle"] = Flow(40008, 22, T0 + 7).handshake().send("c", "PA", b"k" * 5).send("c", "PA", b"k" * 5, dt=400)
    # ... while the same silence on another port ends it and starts a new one.
    f["idle"] = Flow(40009, 7009, T0 + 8).handshake().send("c", "PA", b"k" * 5).send("c", "PA", b"k" * 5, dt=400)
    return f


@pytest.fixture(scope="module")
def conn_rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tcp-semantics")
    pcap = write_capture(scenarios().values(), tmp / "crafted.pcap")
    out = tmp / "out"
    r = subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {}                  # client port (40001...) -> rows
    for row in read_log(out / "conn.log")[1]:
        cport = row["id.orig_p"] if 40000 < row["id.orig_p"] < 41000 else row["id.resp_p"]
        rows.setdefault(cport, []).append(row)
    return rows


def one(conn_rows, cport):
    rows = conn_rows[cport]
    assert len(rows) == 1, rows
    return rows[0]


def test_s2_originator_closed(conn_rows):
    row = one(conn_rows, 40001)
    assert (row["conn_state"], row["history"]) == ("S2", "ShADaF")
    assert (row["orig_bytes"], row["resp_bytes"]) == (10, 0)


def test_s3_responder_closed(conn_rows):
    row = one(conn_rows, 40002)
    assert (row["conn_state"], row["history"]) == ("S3", "ShADaf")


def test_sh_syn_then_fin(conn_rows):
    row = one(conn_rows, 40003)
    assert (row["conn_state"], row["history"]) == ("SH", "SF")
    assert (row["orig_pkts"], row["resp_pkts"]) == (2, 0)


def test_rstrh_synack_then_reset_from_a_likely_server_port(conn_rows):
    row = one(conn_rows, 40004)
    assert (row["id.orig_h"], row["id.orig_p"], row["id.resp_p"]) == (CLIENT, 40004, 80)
    assert (row["conn_state"], row["history"]) == ("RSTRH", "^hr")
    assert (row["orig_pkts"], row["resp_pkts"]) == (0, 2)


def test_shr_synack_then_fin(conn_rows):
    row = one(conn_rows, 40005)
    assert (row["id.orig_h"], row["id.resp_p"]) == (CLIENT, 80)
    assert (row["conn_state"], row["history"]) == ("SHR", "^hf")


def test_content_gap_is_missed_bytes_and_G(conn_rows):
    row = one(conn_rows, 40006)
    assert (row["conn_state"], row["history"]) == ("SF", "ShADaGFf")
    assert row["missed_bytes"] == 10
    assert row["orig_bytes"] == 30            # sequence space: the missing bytes count too


def test_tcp_over_ipv6_with_extension_headers(conn_rows):
    row = one(conn_rows, 40007)
    assert (row["id.orig_h"], row["id.resp_h"], row["proto"], row["ip_proto"]) == (CLIENT6, SERVER6, "tcp", 6)
    assert (row["conn_state"], row["history"]) == ("SF", "ShADdFf")
    assert (row["orig_bytes"], row["resp_bytes"]) == (20, 30)
    # IPv6 length = 40 + payload length, extension headers (8 + 8 bytes) included.
    assert row["orig_pkts"] == 5 and row["orig_ip_bytes"] == 5 * (40 + 16 + 20) + 20
    assert row["resp_ip_bytes"] == 3 * (40 + 16 + 20) + 30


def test_interactive_port_keeps_the_connection_through_a_long_silence(conn_rows):
    row = one(conn_rows, 40008)
    assert row["history"] == "ShAD" and row["orig_pkts"] == 4


def test_tcp_inactivity_timeout_splits_the_connection(conn_rows):
    rows = sorted(conn_rows[40009], key=lambda r: r["ts"])
    assert [(r["history"], r["conn_state"]) for r in rows] == [("ShAD", "S1"), ("D", "OTH")]


# -- headers Zeek's TCP analyzer refuses ------------------------------------------------------

def test_a_tcp_header_zeek_cannot_take_makes_the_connection_and_goes_no_further(tmp_path):
    """Options cut off by the snaplen (truncated_header) or a data offset under 20 bytes
    (bad_TCP_header_len): Zeek makes the connection from the ports, logs the weird under its uid,
    and its TCP analyzer counts nothing of the packet, not even its time."""
    options = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
    syn = bytes(ether() / IP(src=CLIENT, dst=SERVER) / TCP(sport=41001, dport=7101, flags="S", options=options))
    header_cut = 14 + 20 + 24                           # 24 of its 40 TCP header bytes captured
    short_offset = bytes(ether() / IP(src=CLIENT, dst=SERVER) / TCP(sport=41002, dport=7102, flags="S", dataofs=4))
    established = Flow(41003, 7103, T0 + 2).handshake().send("c", "PA", b"x" * 10)
    cut_data = bytes(ether() / IP(src=CLIENT, dst=SERVER) / TCP(sport=41003, dport=7103, flags="PA", seq=1011,
                                                                   ack=5001, options=options) / Raw(b"y" * 10))
    frames = [(T0, syn, header_cut), (T0 + 1, short_offset, len(short_offset))]
    frames += [(float(p.time), bytes(p), len(bytes(p))) for p in established.packets]
    frames += [(T0 + 30, cut_data, header_cut)]          # 28 s later: the connection's time stays
    pcap = tmp_path / "refused-headers.pcap"
    pcap.write_bytes(pcap_file([(int(t), round(t % 1 * 1e6), frame[:caplen], len(frame)) for t, frame, caplen in frames]))
    out = tmp_path / "out"
    r = subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    conns = {row["id.orig_p"]: row for row in read_log(out / "conn.log")[1]}
    for port in (41001, 41002):
        row = conns[port]
        assert (row["history"], row["orig_pkts"], row["resp_pkts"], row["conn_state"]) == (None, 0, 0, "OTH"), row
        assert row["duration"] is None
    row = conns[41003]
    assert (row["history"], row["orig_pkts"], row["orig_bytes"]) == ("ShAD", 3, 10), row
    assert row["duration"] < 1
    weirds = {(w["name"], w["uid"]) for w in read_log(out / "weird.log")[1]}
    assert weirds == {("truncated_header", conns[41001]["uid"]), ("bad_TCP_header_len", conns[41002]["uid"]),
                      ("truncated_header", conns[41003]["uid"])}
