"""`cicd-audit record --pcap`: bad inputs fail cleanly, pcapng equals pcap,
a bad IPv4 header checksum is a weird (no connection), and JSON output.

Captures are crafted with scapy in the test; the real trace comes from
../shared/zeek-oracle (wikipedia, 136 packets).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from capture_builders import record_offsets
from frames import ether
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, wrpcap
from shared_data import shared

from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root]

CLI = str(Path(sys.executable).with_name("cicd-audit"))
WIKIPEDIA = shared("zeek-oracle", "wikipedia", "trace.pcap")
LOGS = ("conn.log", "dns.log", "weird.log", "capture_stats.log")


def record(pcap: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress", *extra],
                          capture_output=True, text=True, timeout=300)


def rows(out: Path, name: str) -> list[dict]:
    return list(read_log(out / f"{name}.log")[1])


def assert_clean_input_error(r: subprocess.CompletedProcess, out: Path, pcap: Path) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert lines[0].startswith("cicd-audit: ") and str(pcap) in lines[0]
    assert not any((out / name).exists() for name in LOGS), f"half-written logs in {out}: {list(out.iterdir())}"


@pytest.mark.parametrize("content", [b"", b"hello, not a capture\n", b"\xd4\xc3\xb2\xa1\x02\x00"],
                         ids=["empty", "text", "truncated-file-header"])
def test_not_a_pcap(tmp_path, content):
    pcap = tmp_path / "input.pcap"
    pcap.write_bytes(content)
    out = tmp_path / "out"
    assert_clean_input_error(record(pcap, out), out, pcap)


def test_missing_file(tmp_path):
    pcap, out = tmp_path / "absent.pcap", tmp_path / "out"
    r = record(pcap, out)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists() or not any(out.iterdir())


def _truncated(tmp_path: Path, cut_into_header: bool) -> Path:
    data = WIKIPEDIA.read_bytes()
    last = record_offsets(data)[-10]
    pcap = tmp_path / "truncated.pcap"
    pcap.write_bytes(data[:last + 8] if cut_into_header else data[:last + 16 + 60])
    return pcap


def _assert_truncation_reported(r: subprocess.CompletedProcess, out: Path, pcap: Path) -> None:
    """A cut-off capture is recorded up to the cut, like Zeek: exit 0, one warning line
    naming the file and the record, a weird, and complete (closed) logs."""
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("cicd-audit: warning:")]
    assert len(warnings) == 1 and str(pcap) in warnings[0] and "packet record 127" in warnings[0], r.stderr
    names = [w["name"] for w in rows(out, "weird")]
    assert names.count("cicd_audit_pcap_truncated") == 1 and "cicd_audit_pcap_read_error" not in names, names
    assert len(rows(out, "conn")) > 0
    for name in LOGS:
        assert (out / name).read_text().rstrip("\n").splitlines()[-1].startswith("#close"), name


def test_pcap_cut_inside_a_packet(tmp_path):
    pcap = _truncated(tmp_path, cut_into_header=False)
    _assert_truncation_reported(record(pcap, tmp_path / "out"), tmp_path / "out", pcap)


def test_pcap_cut_inside_a_record_header(tmp_path):
    pcap = _truncated(tmp_path, cut_into_header=True)
    _assert_truncation_reported(record(pcap, tmp_path / "out"), tmp_path / "out", pcap)


def test_short_frame_does_not_end_the_capture(tmp_path):
    full = ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2)
    short = Ether(bytes(full)[:20])
    ok = ether() / IP(src="192.0.2.3", dst="192.0.2.4") / UDP(sport=3333, dport=4444) / b"hi"
    short.time, ok.time = 1_700_000_000.0, 1_700_000_001.0
    wrpcap(str(tmp_path / "t.pcap"), [short, ok])
    r = record(tmp_path / "t.pcap", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "cicd_audit_pcap_read_error" not in [w["name"] for w in rows(tmp_path / "out", "weird")]
    assert [(c["id.orig_h"], c["id.orig_p"]) for c in rows(tmp_path / "out", "conn")] == [("192.0.2.3", 3333)]


def _packets():
    a, b = "192.0.2.10", "198.51.100.20"
    pkts = [
        ether() / IP(src=a, dst=b) / TCP(sport=43210, dport=80, flags="S", seq=1000),
        ether() / IP(src=b, dst=a) / TCP(sport=80, dport=43210, flags="SA", seq=5000, ack=1001),
        ether() / IP(src=a, dst=b) / TCP(sport=43210, dport=80, flags="A", seq=1001, ack=5001),
        ether() / IP(src=a, dst=b) / UDP(sport=5353, dport=9999) / (b"x" * 10),
    ]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.25
    return pkts


def test_pcapng_equals_pcap(tmp_path):
    pkts = _packets()
    wrpcap(str(tmp_path / "t.pcap"), pkts)
    with PcapNgWriter(str(tmp_path / "t.pcapng")) as w:
        for p in pkts:
            w.write(p)
    assert (tmp_path / "t.pcapng").read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    for name in ("t.pcap", "t.pcapng"):
        r = record(tmp_path / name, tmp_path / f"out-{name}")
        assert r.returncode == 0, r.stderr
    classic, ng = rows(tmp_path / "out-t.pcap", "conn"), rows(tmp_path / "out-t.pcapng", "conn")
    key = lambda r: (r["proto"], r["id.orig_p"])  # noqa: E731
    strip = lambda rs: [{k: v for k, v in r.items() if k != "uid"} for r in sorted(rs, key=key)]  # noqa: E731
    assert len(classic) == 2
    assert strip(classic) == strip(ng)
    tcp = [r for r in ng if r["proto"] == "tcp"][0]
    assert (tcp["history"], tcp["conn_state"], tcp["ts"]) == ("ShA", "S1", 1_700_000_000.0)
    assert tcp["duration"] == pytest.approx(0.5)


def test_wikipedia_as_pcapng_matches_pcap(tmp_path):
    ng = tmp_path / "w.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(WIKIPEDIA), str(ng)], check=True)
    assert record(WIKIPEDIA, tmp_path / "a").returncode == 0
    assert record(ng, tmp_path / "b").returncode == 0
    for log in ("conn", "dns"):
        def norm(rs):
            return sorted(json.dumps({k: v for k, v in r.items() if k != "uid"}, default=str, sort_keys=True)
                                         for r in rs)  # noqa: E731
        assert norm(rows(tmp_path / "a", log)) == norm(rows(tmp_path / "b", log)), log


def test_bad_ipv4_header_checksum_is_a_weird_and_no_connection(tmp_path):
    good = ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1111, dport=2222) / b"payload"
    bad = ether() / IP(src="192.0.2.3", dst="192.0.2.4", chksum=0x1234) / UDP(sport=3333, dport=4444) / b"payload"
    good.time, bad.time = 1_700_000_000.0, 1_700_000_001.0
    wrpcap(str(tmp_path / "t.pcap"), [good, bad])
    r = record(tmp_path / "t.pcap", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    conns = rows(tmp_path / "out", "conn")
    assert [(c["id.orig_h"], c["id.orig_p"]) for c in conns] == [("192.0.2.1", 1111)]
    weirds = rows(tmp_path / "out", "weird")
    # Zeek's flow_weird: the packet's addresses, ports 0, from its IP analyzer.
    assert [(w["uid"], w["id.orig_h"], w["id.orig_p"], w["id.resp_h"], w["id.resp_p"], w["name"], w["source"])
            for w in weirds] == [(None, "192.0.2.3", 0, "192.0.2.4", 0, "bad_IP_checksum", "IP")]
    # -C (Zeek's ignore-checksums) accepts it.
    r = record(tmp_path / "t.pcap", tmp_path / "out-C", "-C")
    assert r.returncode == 0, r.stderr
    assert sorted(c["id.orig_p"] for c in rows(tmp_path / "out-C", "conn")) == [1111, 3333]


def test_ip_headers_zeeks_ip_analyzer_refuses_are_its_weirds(tmp_path):
    """Zeek's IP analyzer refuses these before it takes the addresses: weirds about no flow, from "IP"."""
    udp = UDP(sport=1111, dport=2222) / b"payload"
    packets = [ether() / IP(src="192.0.2.1", dst="192.0.2.2", ihl=4) / udp,        # header under 20 bytes
               ether() / IP(src="192.0.2.1", dst="192.0.2.2", len=12) / udp,       # total length under the header
               # an extension header longer than the payload length
               ether() / IPv6(src="fd00::1", dst="fd00::2", plen=4) / IPv6ExtHdrDestOpt() / udp]
    # About no flow, the two invalid_IP_header_size share one identifier: the second is logged
    # only after weird_ignore's ten minutes.
    for packet, t in zip(packets, (0, 1, 602)):
        packet.time = 1_700_000_000.0 + t
    wrpcap(str(tmp_path / "t.pcap"), packets)
    r = record(tmp_path / "t.pcap", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert rows(tmp_path / "out", "conn") == []
    assert [(w["uid"], w["id.orig_h"], w["name"], w["source"]) for w in rows(tmp_path / "out", "weird")] == [
        (None, None, "IPv4_min_header_size", "IP"), (None, None, "invalid_IP_header_size", "IP"),
        (None, None, "invalid_IP_header_size", "IP")]


def test_offloaded_checksums_make_the_one_weird_row_zeek_writes(tmp_path):
    """Every client packet of Zeek's localhost-bad-chksum trace has a bad TCP checksum: Zeek raises a
    weird for each and logs one per originator (Weird::actions). Its baseline
    (core.checksums_ignore_nets_runtime_update/weird.log) is this row, with the first connection's uid."""
    r = record(shared("zeek-oracle", "tcp-bad-checksums-localhost", "trace.pcap"), tmp_path / "out")
    assert r.returncode == 0, r.stderr
    first = rows(tmp_path / "out", "conn")[0]
    assert [(w["uid"], w["id.orig_h"], w["id.orig_p"], w["id.resp_h"], w["id.resp_p"], w["name"], w["addl"],
             w["notice"], w["source"]) for w in rows(tmp_path / "out", "weird")] == \
        [(first["uid"], "192.168.1.28", 53246, "35.221.46.9", 80, "bad_TCP_checksum", None, False, "TCP")]
    assert list(rows(tmp_path / "out", "capture_stats"))[-1]["weirds"] == 6     # raised: every bad packet


def test_json_format_writes_json_lines(tmp_path):
    r = record(WIKIPEDIA, tmp_path / "out", "--format", "json")
    assert r.returncode == 0, r.stderr
    for name in ("conn", "dns"):
        lines = (tmp_path / "out" / f"{name}.log").read_text().splitlines()
        assert lines, name
        objs = [json.loads(line) for line in lines]
        assert all(isinstance(o, dict) and "uid" in o and "id.orig_h" in o for o in objs)
    tsv = record(WIKIPEDIA, tmp_path / "tsv")
    assert tsv.returncode == 0
    assert len((tmp_path / "out" / "conn.log").read_text().splitlines()) == len(rows(tmp_path / "tsv", "conn"))
    dns = [json.loads(line) for line in (tmp_path / "out" / "dns.log").read_text().splitlines()]
    tsv_dns = rows(tmp_path / "tsv", "dns")
    assert sorted(d.get("query", "") for d in dns) == sorted(d["query"] or "" for d in tsv_dns)


def _dns_exchange() -> tuple[bytes, bytes]:
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    q = DNS(id=7, rd=1, qd=DNSQR(qname="a.example"))
    r = DNS(id=7, qr=1, qd=DNSQR(qname="a.example"), an=DNSRR(rrname="a.example", rdata="192.0.2.9"))
    return (bytes(ether() / IP(src="192.0.2.1", dst="192.0.2.53") / UDP(sport=33333, dport=53) / q),
            bytes(ether() / IP(src="192.0.2.53", dst="192.0.2.1") / UDP(sport=53, dport=33333) / r))


def test_simple_packet_blocks_at_time_zero_are_recorded_and_joined(tmp_path):
    """A pcapng Simple Packet Block has no timestamp (libpcap gives time 0): its connection
    is still written, and the dns.log row joins it."""
    from test_capture_file import idb, shb, spb
    query, reply = _dns_exchange()
    pcap = tmp_path / "spb.pcapng"
    pcap.write_bytes(shb() + idb(1) + spb(query) + spb(reply))
    r = record(pcap, tmp_path / "out")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    conns, dns = rows(tmp_path / "out", "conn"), rows(tmp_path / "out", "dns")
    assert [(c["orig_pkts"], c["resp_pkts"], c["ts"]) for c in conns] == [(1, 1, 0.0)]
    assert [d["uid"] for d in dns] == [conns[0]["uid"]]
    assert "2 packets, 0 non-IP frames, 1 connections" in r.stderr


def test_a_damaged_pcapng_block_is_reported_and_the_logs_are_complete(tmp_path):
    from test_capture_file import epb, idb, shb
    query, reply = _dns_exchange()
    good = shb() + idb(1) + epb(0, 1_700_000_000_000_000, query) + epb(0, 1_700_000_000_100_000, reply)
    pcap = tmp_path / "damaged.pcapng"
    pcap.write_bytes(good + struct.pack("<II", 6, 13) + b"\0" * 40)
    r = record(pcap, tmp_path / "out")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("cicd-audit: warning:")]
    assert len(warnings) == 1 and "impossible length (13)" in warnings[0] and "packet record 3" in warnings[0]
    assert [w["name"] for w in rows(tmp_path / "out", "weird")] == ["cicd_audit_pcap_truncated"]
    assert len(rows(tmp_path / "out", "conn")) == 1
    for name in LOGS:
        assert (tmp_path / "out" / name).read_text().rstrip("\n").splitlines()[-1].startswith("#close"), name


def test_nanosecond_timestamps_are_read_at_microseconds_as_zeek_reads_them(tmp_path):
    """libpcap opens a capture for Zeek at microsecond precision, truncating
    finer timestamps: 240 ns across a microsecond boundary is Zeek's 1 us."""
    frame = bytes(ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=99) / (b"x" * 20))
    pcap = tmp_path / "nano.pcap"
    with pcap.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))   # nanosecond pcap
        for ns in (729_856_830, 729_856_950, 729_857_070):
            f.write(struct.pack("<IIII", 1_342_606_813, ns, len(frame), len(frame)) + frame)
    out = tmp_path / "out"
    assert record(pcap, out).returncode == 0
    (row,) = rows(out, "conn")
    assert row["ts"] == pytest.approx(1_342_606_813.729856, abs=1e-7)
    assert row["duration"] == pytest.approx(0.000001, abs=1e-8)
