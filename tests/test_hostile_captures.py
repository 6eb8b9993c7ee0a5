"""`record --pcap` on captures a fuzzing campaign found mishandled: each must finish, say what it
could not read, and leave nothing unseen or uncounted.

- a packet time past 64-bit nanoseconds (pcapng timestamps at a coarse resolution) was handed on
  wrapped, or stopped the compiled loop's sweep clock for good (the recording never ended);
- a capture read from a pipe (`tcpdump -w - | cicd-audit record --pcap /dev/stdin`) failed with a
  traceback, as the bulk reader seeks;
- an 802.11 A-MSDU's subframes after the first were dropped without a word;
- frames holding no IP (ARP, 802.11 management, a cooked ARP frame) were counted nowhere;
- file names from the command line reached the terminal with their escape sequences.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from capture_builders import epb, idb, shb
from capture_builders import pcap as pcap_file
from frames import ether
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.dot11 import Dot11
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from test_record_pcap import rows

pytestmark = [pytest.mark.root]

CLI = str(Path(sys.executable).with_name("cicd-audit"))
T0_US = 1_700_000_000 * 10**6
US_PAST_64_BIT_NS = (1 << 64) // 1000 + 1       # the first microsecond count past 2^64 ns


def _query(name: str, sport: int) -> IP:
    return IP(src="10.5.0.1", dst="10.5.0.53") / UDP(sport=sport, dport=53) / DNS(rd=1, qd=DNSQR(qname=name))


def _record(pcap: Path, out: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    r = subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r


@pytest.mark.parametrize("times_us", [
    [T0_US, US_PAST_64_BIT_NS, T0_US + 1000],            # one record past the clock, mid-file
    [US_PAST_64_BIT_NS, T0_US, T0_US + 1000],            # the first record: it may not start the sweep clock
], ids=["mid-file", "first"])
def test_a_packet_time_past_64_bit_nanoseconds_is_refused_and_the_replay_goes_on(tmp_path, times_us):
    frames = [bytes(ether() / _query("a.example", 40000)), bytes(ether() / _query("b.example", 40001)),
              bytes(ether() / _query("c.example", 40002))]
    pcap = tmp_path / "times.pcapng"
    pcap.write_bytes(shb() + idb() + b"".join(epb(0, ts, frame) for ts, frame in zip(times_us, frames)))
    out = tmp_path / "out"
    _record(pcap, out, timeout=60)      # the compiled loop used to spin here for ever
    (weird,) = rows(out, "weird")
    assert weird["name"] == "cicd_audit_frame_rejected" and "64-bit packet clock" in weird["addl"]
    assert len(rows(out, "dns")) == 2
    assert rows(out, "capture_stats")[-1]["parse_errors"] == 1


def test_a_packet_time_a_second_short_of_the_clock_s_end_does_not_stop_the_sweeps(tmp_path):
    """Its next sweep falls past 2^64 ns; the compiled loop takes that time as a 64-bit integer."""
    near_end_ns = (1 << 64) - 1000
    pcap = tmp_path / "near-end.pcapng"
    pcap.write_bytes(shb() + idb(tsresol=9) + epb(0, T0_US * 1000, bytes(ether() / _query("a.example", 40000)))
                     + epb(0, near_end_ns, bytes(ether() / _query("b.example", 40001))))
    _record(pcap, tmp_path / "out", timeout=60)
    assert len(rows(tmp_path / "out", "dns")) == 2


def test_a_capture_read_from_a_pipe_writes_what_the_file_writes(tmp_path):
    frames = [bytes(ether() / _query(f"q{i}.example", 41000 + i)) for i in range(50)]
    pcap = tmp_path / "file.pcap"
    pcap.write_bytes(pcap_file([(1_700_000_000 + i, 0, frame) for i, frame in enumerate(frames)]))
    _record(pcap, tmp_path / "from-file")
    with pcap.open("rb") as feed:
        piped = subprocess.run(f"cat | {CLI} record --pcap /dev/stdin --out {tmp_path / 'from-pipe'} --no-progress",
                               shell=True, stdin=feed, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "Traceback" not in piped.stderr, piped.stderr

    def masked(name: str) -> list[tuple]:
        return sorted(tuple(v for k, v in row.items() if k != "uid") for row in rows(tmp_path / name, "dns"))
    assert masked("from-pipe") == masked("from-file") and len(masked("from-file")) == 50


def test_every_subframe_of_an_802_11_a_msdu_is_read(tmp_path):
    def subframe(ip: bytes, last: bool = False) -> bytes:
        body = b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + ip
        return bytes(6) + bytes(6) + struct.pack("!H", len(body)) + body + (b"" if last else bytes(len(body) % 4))
    header = bytes(Dot11(type=2, subtype=8, addr1="02:00:00:00:00:02", addr2="02:00:00:00:00:01",
                         addr3="02:00:00:00:00:03")) + b"\x80\x00"          # QoS control: A-MSDU present
    frame = header + subframe(bytes(_query("first.example", 42000))) + subframe(bytes(_query("second.example", 42001)),
                                                                             last=True)
    pcap = tmp_path / "amsdu.pcap"
    pcap.write_bytes(pcap_file([(1_700_000_000, 0, frame)], linktype=105))
    _record(pcap, tmp_path / "out")
    assert sorted(row["query"] for row in rows(tmp_path / "out", "dns")) == ["first.example", "second.example"]


def test_frames_holding_no_ip_are_counted(tmp_path):
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01") / ARP(pdst="10.5.0.9"))
    cooked_arp = struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0806) + bytes(ARP(pdst="10.5.0.9"))
    ethernet = tmp_path / "ethernet.pcap"
    ethernet.write_bytes(pcap_file([(1_700_000_000 + i, 0, frame) for i, frame in
                                    enumerate([arp, arp, bytes(ether() / _query("a.example", 43000))])]))
    cooked = tmp_path / "cooked.pcap"
    cooked.write_bytes(pcap_file([(1_700_000_000 + i, 0, cooked_arp) for i in range(3)], linktype=113))
    for pcap, non_ip, packets in ((ethernet, 2, 1), (cooked, 3, 0)):
        r = _record(pcap, tmp_path / pcap.stem)
        stats = rows(tmp_path / pcap.stem, "capture_stats")[-1]
        assert (stats["non_ip_frames"], stats["packets"]) == (non_ip, packets)
        assert f"{packets} packets, {non_ip} non-IP frames," in r.stderr


def test_file_names_reach_the_terminal_without_their_control_characters(tmp_path):
    hostile = "\x1b[31mred\x1b]0;title\x07"
    not_a_capture = tmp_path / f"{hostile}.pcap"
    not_a_capture.write_bytes(b"not a capture\n")
    r = subprocess.run([CLI, "record", "--pcap", str(not_a_capture), "--out", str(tmp_path / "a"), "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a pcap or pcapng file" in r.stderr
    good = tmp_path / "good.pcap"
    good.write_bytes(pcap_file([(1_700_000_000, 0, bytes(ether() / _query("a.example", 44000)))]))
    r2 = _record(good, tmp_path / f"out{hostile}")
    for stderr in (r.stderr, r2.stderr):
        assert "\x1b" not in stderr and "\x07" not in stderr
        assert "\\x1b[31mred" in stderr          # shown, escaped
