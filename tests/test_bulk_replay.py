"""The compiled replay loop (recorder/drivers/_replay.c, bulk_replay.py) against the reference loop.

First the loop itself, on records built here: a two-instruction TC program
(returns 0) stands for the recorder's, and two counters and a buffer in
this process stand for the ring buffer's positions and records. Then whole `record --pcap` runs in
this process, once through the reference loop and once in bulk with chunks
and call budgets small enough that records straddle chunks, sweeps and ring
records interrupt runs, and frames larger than a chunk go to the reference
loop: the logs and warnings must be the same.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from pathlib import Path

import pytest
from capture_builders import block, classic_records, epb, idb, record_offsets, shb, spb
from capture_builders import pcap as pcap_file
from frames import ether
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, UDP, IPOption, fragment
from scapy.layers.inet6 import IPv6
from shared_data import shared
from zeek_rows import rows_uids_masked

from cicd_audit.recorder.drivers import bulk_replay, replay_loop
from cicd_audit.recorder.drivers.bulk_replay import Stop
from cicd_audit.recorder.drivers.capture_file import CaptureFile
from cicd_audit.recorder.drivers.pcap_replay import record_pcap
from cicd_audit.recorder.kernel import abi, bpf_program, bpf_syscall, ringbuf
from cicd_audit.recorder.kernel.abi import EventType
from cicd_audit.recorder.kernel.packet_runner import FrameRejected, PacketRunner, runnable
from cicd_audit.zeeklog.reader import read_log

pytestmark = pytest.mark.root

_replay = bulk_replay._compiled
if _replay is None:
    pytest.fail("the compiled replay loop is not built: pip install --editable . builds it", pytrace=False)

FRAME = bytes(ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"x")
LIMIT = 262_144
T0 = 1_700_000_000


@pytest.fixture
def prog_fd():
    insns = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)    # r0 = 0; exit
    loaded = bpf_program._load_functions([("ca_t", insns, bpf_syscall.PROG_SCHED_CLS, 0)], "GPL", 0)
    yield loaded["ca_t"].fd
    bpf_program.unload({}, loaded)


class Ring:
    """consumer_pos, producer_pos and the data area, as the compiled loop reads them (records are
    written from the start and never wrap here, so one mapping of the data stands for two)."""

    SIZE = 4096

    def __init__(self):
        self.consumer, self.producer = ctypes.c_uint64(0), ctypes.c_uint64(0)
        self.data = ctypes.create_string_buffer(2 * self.SIZE)

    def mapped(self) -> tuple[int, int, int, int]:
        return ctypes.addressof(self.consumer), ctypes.addressof(self.producer), ctypes.addressof(self.data), self.SIZE

    def write(self, event_type: int, size: int = 64, header_bits: int = 0) -> None:
        """A committed record of size bytes whose event header says event_type, as the kernel writes it."""
        at = self.producer.value
        struct.pack_into("<II", self.data, at, size | header_bits, 0)
        struct.pack_into("<II", self.data, at + ringbuf.HEADER_SIZE, event_type, size)
        self.producer.value = at + ((ringbuf.HEADER_SIZE + size + 7) & ~7)

    def take_all(self) -> None:
        self.consumer.value = self.producer.value


MAY_WAIT = sum(1 << t for t in bulk_replay.MAY_WAIT)


# A ring with nothing in it, alive as long as the module: the loop reads its positions by address.
EMPTY_RING = Ring()


def replayer(fd: int, ring: Ring, big_endian=False, nano=False, limit=LIMIT):
    """A loop reading classic pcap records."""
    r = _replay.Replayer(fd, *ring.mapped(), MAY_WAIT)
    r.classic(big_endian, nano, limit)
    return r


def pcapng_replayer(fd: int, ring: Ring, interfaces, big_endian=False):
    """A loop reading a pcapng section with these interfaces: (ethernet, units_per_s, offset_s) each."""
    r = _replay.Replayer(fd, *ring.mapped(), MAY_WAIT)
    r.pcapng(big_endian, interfaces)
    return r


def records(frames, big_endian=False, nano=False, start_s=T0, step_us=1000) -> bytes:
    """Classic pcap records (no file header): one per frame, step_us apart."""
    out, e = b"", ">" if big_endian else "<"
    for i, frame in enumerate(frames):
        us = i * step_us
        frac = (us % 1_000_000) * 1000 + 999 if nano else us % 1_000_000     # nano: 999 ns below the next us
        out += struct.pack(e + "IIII", start_s + us // 1_000_000, frac, len(frame), len(frame)) + frame
    return out


@pytest.mark.parametrize("big_endian", [False, True], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("nano", [False, True], ids=["micro", "nano"])
def test_every_whole_record_runs_in_either_byte_order_and_resolution(prog_fd, big_endian, nano):
    chunk = records([FRAME] * 5, big_endian, nano)
    r = replayer(prog_fd, EMPTY_RING, big_endian, nano)
    assert r.run(chunk, 0, 0, 100) == (Stop.END, len(chunk))
    assert (r.records, r.frames) == (5, 5)
    # The latest packet time, truncated to the microsecond as Zeek reads it.
    assert r.last_ns == T0 * 10**9 + 4 * 1_000_000


def test_a_cut_record_is_left_where_it_starts(prog_fd):
    whole = records([FRAME] * 3)
    for cut in (8, 16 + 10):            # inside its header, inside its frame
        chunk = whole[:-(len(FRAME) + 16) + cut]
        r = replayer(prog_fd, EMPTY_RING)
        assert r.run(chunk, 0, 0, 100) == (Stop.END, 2 * (16 + len(FRAME)))
        assert r.records == 2


def test_a_sweep_due_stops_before_the_record_it_is_due_at(prog_fd):
    chunk = records([FRAME] * 4, step_us=400_000)          # at 0, 0.4, 0.8 and 1.2 s
    r = replayer(prog_fd, EMPTY_RING)
    due = (T0 + 1) * 10**9
    assert r.run(chunk, 0, due, 100) == (Stop.SWEEP, 3 * (16 + len(FRAME)))
    assert (r.records, r.stop_ts_ns) == (3, due + 200_000_000)
    # Called again past the sweep, it goes on from there.
    assert r.run(chunk, 3 * (16 + len(FRAME)), due + 10**9, 100) == (Stop.END, len(chunk))
    assert r.records == 1


def test_a_record_longer_than_the_limit_is_damage_left_to_the_reference_reader(prog_fd):
    chunk = records([FRAME, FRAME]) + struct.pack("<IIII", T0, 0, 70_000, 70_000) + bytes(16)
    r = replayer(prog_fd, EMPTY_RING, limit=65_535)
    assert r.run(chunk, 0, 0, 100) == (Stop.HAND_OVER, 2 * (16 + len(FRAME)))


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_packet_blocks_run_with_their_interface_s_clock(prog_fd, endian):
    chunk = (epb(0, 1_500_000, FRAME, endian)                  # microseconds: 1.5 s
             + epb(1, 2_000_000_001_999, FRAME, endian)        # nanoseconds, +100 s
             + epb(2, 3 * 1024 + 512, FRAME, endian))          # 2^-10 s: 3.5 s
    r = pcapng_replayer(prog_fd, EMPTY_RING, [(True, 10**6, 0), (True, 10**9, 100), (True, 1024, 0)], endian == ">")
    assert r.run(chunk, 0, 0, 100) == (Stop.END, len(chunk))
    assert (r.records, r.frames) == (3, 3)
    assert r.last_ns == 2_100_000_001_000              # 2100.000001999 s, truncated to the microsecond
    first = len(epb(0, 0, FRAME))
    r.run(chunk, 0, 2 * 10**9, 100)             # the second record is due a sweep: its time, as Zeek reads it
    assert (r.records, r.stop_ts_ns) == (1, 2_100_000_001_000)
    assert r.run(chunk, first, 0, 100)[1] == len(chunk)


@pytest.mark.parametrize("what", ["section header", "interface description", "simple packet block",
                                  "statistics block", "another link type", "an interface never described",
                                  "two different lengths", "captured length past the block", "cut off"])
def test_every_other_pcapng_block_and_damage_is_handed_over_where_it_starts(prog_fd, what):
    good = epb(0, 1, FRAME)
    other = {"section header": shb(), "interface description": idb(1), "simple packet block": spb(FRAME),
             "statistics block": block(5, struct.pack("<III", 0, 0, 0)), "another link type": epb(1, 1, FRAME),
             "an interface never described": epb(2, 1, FRAME),
             "two different lengths": good[:-4] + struct.pack("<I", len(good) + 4),
             "captured length past the block": good[:20] + struct.pack("<I", len(FRAME) + 8) + good[24:],
             "cut off": good[:-6]}[what]
    r = pcapng_replayer(prog_fd, EMPTY_RING, [(True, 10**6, 0), (False, 10**6, 0)])
    if what == "cut off":               # at the chunk's end: the rest is in the next chunk
        assert r.run(good + other, 0, 0, 100) == (Stop.END, len(good))
    else:
        assert r.run(good + other + good, 0, 0, 100) == (Stop.HAND_OVER, len(good))
    assert r.records == 1


def test_a_packet_time_out_of_64_bits_is_handed_over(prog_fd):
    r = pcapng_replayer(prog_fd, EMPTY_RING, [(True, 1, 0)])          # seconds: 2^64 - 1 of them
    assert r.run(epb(0, 2**64 - 1, FRAME), 0, 0, 100) == (Stop.HAND_OVER, 0)


def test_a_frame_shorter_than_a_test_run_takes_runs_padded(prog_fd):
    """An Ethernet frame of 10 bytes, an IPv4 one cut in its IP header: the kernel builds no skb from
    them, so they run padded, their length in the mark (the recorder's program cuts them back)."""
    chunk = records([FRAME[:10], FRAME[:30], FRAME])
    r = replayer(prog_fd, EMPTY_RING)
    assert r.run(chunk, 0, 0, 100) == (Stop.END, len(chunk))
    assert (r.records, r.frames) == (3, 3)


@pytest.mark.parametrize("frame, runs_as", [
    (b"", (bytes(14), 0 | abi.MARK_PADDED)),
    (FRAME[:10], (FRAME[:10] + bytes(4), 10 | abi.MARK_PADDED)),
    (FRAME[:30], (FRAME[:30] + bytes(4), 30 | abi.MARK_PADDED)),
    (FRAME, (FRAME, None)),
    (bytes(12) + b"\x86\xdd" + bytes(30), (bytes(12) + b"\x86\xdd" + bytes(40), 44 | abi.MARK_PADDED)),
    (bytes(12) + b"\x08\x06" + bytes(2), (bytes(12) + b"\x08\x06" + bytes(2), None)),     # ARP: taken as it is
])
def test_the_reference_loop_pads_as_the_compiled_one(frame, runs_as):
    assert runnable(frame) == runs_as


RECORD = 16 + len(FRAME)


@pytest.mark.parametrize("urgent", [EventType.FRAGMENT, EventType.PROCESS, 31, 1000])
def test_a_ring_record_that_cannot_wait_stops_the_loop_after_the_frame(prog_fd, urgent):
    """A fragment (its datagram must run before the next frame) or any type not known to wait."""
    ring = Ring()
    chunk = records([FRAME] * 4)
    r = replayer(prog_fd, ring)
    ring.write(EventType.DNS)
    ring.write(EventType.CONN_END)
    ring.write(urgent)
    assert r.run(chunk, 0, 0, 100) == (Stop.EVENTS, RECORD)
    assert (r.records, r.frames, r.urgent) == (1, 1, 1)
    ring.take_all()
    ring.write(EventType.WEIRD)
    assert r.run(chunk, RECORD, 0, 100) == (Stop.END, len(chunk))
    assert (r.records, r.urgent) == (3, 0)


def test_records_that_can_wait_stay_in_the_ring_until_a_stop(prog_fd):
    ring = Ring()
    for event_type in bulk_replay.MAY_WAIT:
        ring.write(event_type)
    ring.write(EventType.FRAGMENT, header_bits=ringbuf.DISCARD_BIT)     # discarded: nothing to handle
    chunk = records([FRAME] * 3)
    r = replayer(prog_fd, ring)
    assert r.run(chunk, 0, 0, 100) == (Stop.END, len(chunk))
    assert r.frames == 3


def test_a_ring_a_quarter_full_stops_the_loop(prog_fd):
    ring = Ring()
    chunk = records([FRAME] * 3)
    r = replayer(prog_fd, ring)
    while ring.producer.value <= Ring.SIZE // 4 - 64:
        ring.write(EventType.DNS)
    assert r.run(chunk, 0, 0, 100) == (Stop.END, len(chunk))     # not yet more than a quarter
    ring.write(EventType.DNS)
    r = replayer(prog_fd, ring)
    assert r.run(chunk, 0, 0, 100) == (Stop.EVENTS, RECORD)
    assert r.urgent == 0        # only room to make: the records may wait in the backlog


def test_a_full_ring_still_says_a_record_that_cannot_wait(prog_fd):
    """The records past a quarter are looked at too: a fragment among them must not wait."""
    ring = Ring()
    while ring.producer.value <= Ring.SIZE // 4:
        ring.write(EventType.DNS)
    ring.write(EventType.FRAGMENT)
    r = replayer(prog_fd, ring)
    assert r.run(records([FRAME] * 3), 0, 0, 100) == (Stop.EVENTS, RECORD)
    assert r.urgent == 1


def test_a_record_still_being_written_stops_the_loop(prog_fd):
    ring = Ring()
    ring.write(EventType.DNS, header_bits=ringbuf.BUSY_BIT)
    r = replayer(prog_fd, ring)
    assert r.run(records([FRAME] * 2), 0, 0, 100) == (Stop.EVENTS, RECORD)
    assert r.urgent == 1


def test_a_call_takes_at_most_its_budget(prog_fd):
    chunk = records([FRAME] * 5)
    r = replayer(prog_fd, EMPTY_RING)
    assert r.run(chunk, 0, 0, 3) == (Stop.BUDGET, 3 * (16 + len(FRAME)))
    assert r.records == 3


@pytest.mark.parametrize("length", [60, 1500])
def test_a_refused_frame_reads_as_the_reference_runner_says_it(length, tmp_path):
    """A file that is no BPF program: the kernel refuses every frame (EINVAL). A long frame is cut
    and retried first, as PacketRunner retries it."""
    with open(tmp_path / "not-a-program", "w") as not_a_program:
        frame = FRAME + bytes(length - len(FRAME))
        r = replayer(not_a_program.fileno(), EMPTY_RING)
        assert r.run(records([frame, FRAME]), 0, 0, 100) == (Stop.REJECTED, 16 + length)
        assert (r.records, r.frames, r.stop_ts_ns) == (1, 0, T0 * 10**9)
        with pytest.raises(FrameRejected) as refused:
            PacketRunner(not_a_program.fileno()).run(frame, 0)
        assert str(refused.value) == f"the kernel refused a {r.stop_length}-byte frame"


def test_any_other_failure_is_an_os_error(prog_fd):
    closed = os.dup(prog_fd)
    os.close(closed)
    with pytest.raises(OSError) as failed:
        replayer(closed, EMPTY_RING).run(records([FRAME]), 0, 0, 100)
    assert failed.value.errno == errno.EBADF and "BPF_PROG_TEST_RUN failed" in str(failed.value)


def test_an_offset_outside_the_chunk_is_refused(prog_fd):
    with pytest.raises(ValueError):
        replayer(prog_fd, EMPTY_RING).run(records([FRAME]), 10_000, 0, 100)


# -- whole replays: bulk against the reference -------------------------------------------------

WIKIPEDIA = shared("zeek-oracle", "wikipedia", "trace.pcap")
DNS_KEYS = shared("zeek-oracle", "udp-dns-keys", "trace.pcap")
LOGS = ("conn.log", "dns.log", "weird.log")


@pytest.fixture
def small_steps(monkeypatch):
    """Chunks of a few records and calls of a few records: every stop and hand-over happens."""
    monkeypatch.setattr(bulk_replay, "CHUNK_BYTES", 700)
    monkeypatch.setattr(bulk_replay, "BUDGET_RECORDS", 3)
    taken = []
    take = bulk_replay._take_chunk

    def counting(*args):
        result = take(*args)
        taken.append(result[2])
        return result

    monkeypatch.setattr(bulk_replay, "_take_chunk", counting)
    return taken


def replay_both(pcap: Path, tmp_path: Path, monkeypatch, capsys, small_steps) -> tuple[Path, Path, str, str]:
    """(reference logs, bulk logs, reference warnings, bulk warnings)."""
    with monkeypatch.context() as m:
        m.setattr(bulk_replay, "_compiled", None)
        record_pcap(pcap, tmp_path / "reference", validate_checksums=False, progress=False)
    reference_err = capsys.readouterr().err
    record_pcap(pcap, tmp_path / "bulk", validate_checksums=False, progress=False)
    bulk_err = capsys.readouterr().err
    assert sum(small_steps) > 0, "the compiled loop took no record"
    return tmp_path / "reference", tmp_path / "bulk", reference_err, bulk_err


def assert_same_logs(reference: Path, bulk: Path) -> None:
    for name in LOGS:
        assert rows_uids_masked(bulk / name) == rows_uids_masked(reference / name), name


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line]


@pytest.mark.parametrize("pcap", [WIKIPEDIA, DNS_KEYS], ids=["wikipedia", "udp-dns-keys"])
def test_a_capture_in_small_chunks_writes_the_reference_logs(pcap, tmp_path, monkeypatch, capsys, small_steps):
    reference, bulk, _, _ = replay_both(pcap, tmp_path, monkeypatch, capsys, small_steps)
    assert_same_logs(reference, bulk)
    assert len(rows_uids_masked(bulk / "conn.log")) > 0


def test_big_endian_nanosecond_capture_writes_the_reference_logs(tmp_path, monkeypatch, capsys, small_steps):
    # Every record of the trace (little-endian, microseconds), 123 ns into its microsecond.
    records = [(sec, usec * 1000 + 123, frame) for sec, usec, frame in classic_records(WIKIPEDIA.read_bytes())]
    out = pcap_file(records, endian=">", nano=True)
    pcap = tmp_path / "big-nano.pcap"
    pcap.write_bytes(out)
    reference, bulk, _, _ = replay_both(pcap, tmp_path, monkeypatch, capsys, small_steps)
    assert_same_logs(reference, bulk)
    # And the same as the original file's: nothing in it finer than a microsecond.
    assert rows_uids_masked(bulk / "conn.log") == rows_uids_masked(
        _recorded(WIKIPEDIA, tmp_path / "original") / "conn.log")


def test_frames_cut_short_or_of_no_defined_type_are_zeek_s_link_layer_weirds(tmp_path, monkeypatch, capsys,
                                                                              small_steps):
    """Frames BPF_PROG_TEST_RUN would not take run padded and cut back in the program, so neither loop
    refuses any: each gets the weird of the Zeek analyzer that gives up on it, about no flow."""
    mac = FRAME[:12]
    odd = [
        b"", FRAME[:10], mac + b"\x08\x00\x45\x00",                  # 0, 10 and 16 bytes: Ethernet refuses them
        FRAME[:30],                                                      # 16 bytes of an IPv4 header
        mac + b"\x86\xdd" + bytes(IPv6(src="fd00::1", dst="fd00::2"))[:30],
        mac + b"\x05\xff" + bytes(50),                                  # neither a length nor an EtherType
        mac + b"\x81\x00\x00\x07\x05\xff" + bytes(50),
        mac + b"\x81\x00\x00\x07\x08",                                 # a VLAN tag cut short
    ]
    pcap = tmp_path / "odd.pcap"
    pcap.write_bytes(pcap_file([(1_700_000_000 + i, 0, frame) for i, frame in enumerate(odd + [FRAME] * 4)]))
    reference, bulk, reference_err, bulk_err = replay_both(pcap, tmp_path, monkeypatch, capsys, small_steps)
    assert_same_logs(reference, bulk)
    weirds = [(w["name"], w["uid"], w["id.orig_h"], w["source"]) for w in read_log(bulk / "weird.log")[1]]
    assert weirds == [("truncated_ethernet_frame", None, None, "ETHERNET"), ("truncated_IP", None, None, "IP"),
                      ("undefined_ether_type", None, None, "ETHERNET"),
                      ("undefined_vlan_protocol", None, None, "VLAN"), ("truncated_VLAN_header", None, None, "VLAN")]
    stats = list(read_log(bulk / "capture_stats.log")[1])[-1]
    assert stats["weirds"] == len(odd)


def _ip_length_claims(frame: bytes, length: int) -> bytes:
    """The frame with its IP header's length field set to length (IPv4 total, IPv6 payload)."""
    ip = bytearray(frame[14:])
    if ip[0] >> 4 == 4:
        ip[2:4] = length.to_bytes(2, "big")
    else:
        ip[4:6] = length.to_bytes(2, "big")
    return frame[:14] + bytes(ip)


def test_an_ip_length_past_the_wire_length_is_truncated_ip_len_and_a_third_vlan_tag_is_weird(
        tmp_path, monkeypatch, capsys, small_steps):
    """Zeek's IP analyzer drops a packet whose IP length runs past the record's wire length
    (truncated_IP_len), but reads on when only the capture was cut (wire length as claimed).
    Its VLAN analyzer raises triple_tagged_vlan_unsupported at a third tag and reads on."""
    v4 = bytes(ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=2000) / b"x")
    v6 = bytes(ether() / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1001, dport=2001) / b"y")
    cut = bytes(ether() / IP(src="10.0.0.3", dst="10.0.0.4") / UDP(sport=1002, dport=2002) / b"z")
    tags = b"\x88\xa8\x00\x01" + b"\x81\x00\x00\x02" + b"\x81\x00\x00\x03"
    tagged = bytes(ether() / IP(src="10.0.0.5", dst="10.0.0.6") / UDP(sport=1003, dport=2003) / b"t")
    tagged = tagged[:12] + tags + tagged[12:]
    records = [
        (T0, 0, _ip_length_claims(v4, 200)),                  # wire length = captured: the IP length lies
        (T0, 1, _ip_length_claims(v6, 200)),
        (T0, 2, _ip_length_claims(cut, 200), 14 + 200),      # cut by the snaplen: read on
        (T0, 3, tagged),
    ]
    pcap = tmp_path / "lengths.pcap"
    pcap.write_bytes(pcap_file(records))
    reference, bulk, _, _ = replay_both(pcap, tmp_path, monkeypatch, capsys, small_steps)
    assert_same_logs(reference, bulk)
    weirds = {(w["name"], w["uid"], w["id.orig_h"], w["addl"], w["source"]) for w in read_log(bulk / "weird.log")[1]}
    assert weirds == {("truncated_IP_len", None, None, None, "IP"),
                      ("triple_tagged_vlan_unsupported", None, None, "inner VLAN tag overwritten", "VLAN")}
    conns = [(c["id.orig_h"], c["id.resp_p"]) for c in read_log(bulk / "conn.log")[1]]
    assert sorted(conns) == [("10.0.0.3", 2002), ("10.0.0.5", 2003)]


def test_headers_the_capture_cut_are_internally_truncated_and_headers_the_ip_length_cuts_are_truncated(
        tmp_path, monkeypatch, capsys, small_steps):
    """Zeek tells a header the snaplen cut (internally_truncated_header) from one the IP length has
    no room for (truncated_header): the IP header's options (about no flow, source IP), and a
    transport header (about the flow, ports 0, source the transport). No connection comes of them."""
    icmp = bytes(ether() / IP(src="10.3.0.1", dst="10.3.0.2") / ICMP() / (b"p" * 56))
    udp = bytes(ether() / IP(src="10.3.0.3", dst="10.3.0.4") / UDP(sport=1, dport=2) / b"u")
    options = bytes(ether() / IP(src="10.3.0.5", dst="10.3.0.6", options=[IPOption(b"\x01" * 4)]) / UDP() / b"o")
    records = [
        (T0, 0, icmp[:14 + 20 + 4], len(icmp)),                # the ICMP header cut by the snaplen
        (T0, 1, _ip_length_claims(udp, 20 + 4)[:14 + 20 + 4]),  # the IP length holds 4 bytes of UDP
        (T0, 2, options[:14 + 20], len(options)),              # the IP header's options cut
    ]
    pcap = tmp_path / "cut.pcap"
    pcap.write_bytes(pcap_file(records))
    reference, bulk, _, _ = replay_both(pcap, tmp_path, monkeypatch, capsys, small_steps)
    assert_same_logs(reference, bulk)
    weirds = {(w["name"], w["id.orig_h"] and str(w["id.orig_h"]), w["id.orig_p"], w["source"])
              for w in read_log(bulk / "weird.log")[1]}
    assert weirds == {("internally_truncated_header", "10.3.0.1", 0, "ICMP"),
                      ("truncated_header", "10.3.0.3", 0, "UDP"),
                      ("internally_truncated_header", None, None, "IP")}
    assert list(read_log(bulk / "conn.log")[1]) == []


def test_blocks_the_compiled_loop_leaves_back_to_back_do_not_have_each_chunk_read_again(tmp_path, monkeypatch):
    """An interface description before every packet (a fuzzed capture): each chunk read for a record
    or two made the replay quadratic in the file (20,000 pairs took 75 s); the reference loop now
    reads a stretch of them. Counted in chunk reads, not timed."""
    pairs = 3000
    frames = [bytes(ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / i.to_bytes(4, "big"))
              for i in range(pairs)]
    pcap = tmp_path / "idb-per-packet.pcapng"
    pcap.write_bytes(shb() + b"".join(idb() + epb(i, T0 * 10**6 + i, frame) for i, frame in enumerate(frames)))
    reads = []
    read_records = CaptureFile.read_records

    def counting(self, size):
        reads.append(size)
        return read_records(self, size)

    monkeypatch.setattr(CaptureFile, "read_records", counting)
    record_pcap(pcap, tmp_path / "out", validate_checksums=False, progress=False)
    (conn,) = read_log(tmp_path / "out" / "conn.log")[1]
    assert conn["orig_pkts"] == pairs
    assert len(reads) < pairs // 20, len(reads)


def test_a_fragment_runs_its_datagram_before_the_next_frame(tmp_path, monkeypatch, capsys, small_steps):
    """A fragmented DNS query answered at once: its datagram, reassembled by Python, must run before
    the answer's frame, or the answer would open the connection (roles swapped) and find no query."""
    name = "a" * 60 + "." + "b" * 60 + "." + "c" * 60 + ".example"
    query = IP(src="10.0.0.1", dst="10.0.0.53", id=7) / UDP(sport=40000, dport=53) / DNS(
        id=1, rd=1, qd=DNSQR(qname=name, qtype="TXT"))
    answer = IP(src="10.0.0.53", dst="10.0.0.1") / UDP(sport=53, dport=40000) / DNS(
        id=1, qr=1, qd=DNSQR(qname=name, qtype="TXT"), an=DNSRR(rrname=name, type="TXT", rdata="x"))
    frames = [bytes(ether() / f) for f in fragment(query, fragsize=64)] + [bytes(ether() / answer)]
    pcap = tmp_path / "fragmented-query.pcap"
    pcap.write_bytes(pcap_file([(T0, i, frame) for i, frame in enumerate(frames)]))
    monkeypatch.setattr(bulk_replay, "CHUNK_BYTES", 1 << 20)      # nothing but the fragment stops the loop
    monkeypatch.setattr(bulk_replay, "BUDGET_RECORDS", 1000)
    reference, bulk, _, _ = replay_both(pcap, tmp_path, monkeypatch, capsys, small_steps)
    assert_same_logs(reference, bulk)
    (conn,) = rows_uids_masked(bulk / "conn.log")
    assert "\t10.0.0.1\t40000\t10.0.0.53\t53\t" in conn
    (dns,) = rows_uids_masked(bulk / "dns.log")
    assert "\tTXT 1 x\t" in dns and dns.endswith("\tquery")     # the query and its answer, one row


def _wikipedia_records() -> list[tuple[int, bytes]]:
    """(capture time in us, frame) of every record of the wikipedia trace."""
    return [(sec * 10**6 + usec, frame) for sec, usec, frame in classic_records(WIKIPEDIA.read_bytes())]


def test_pcapng_with_sections_interfaces_and_other_blocks_writes_the_reference_logs(
        tmp_path, monkeypatch, capsys, small_steps):
    """The wikipedia trace as pcapng: microsecond and nanosecond interfaces (one with an offset), a
    raw-IP interface, statistics and custom blocks, and a second, big-endian section: the same logs
    by both loops, and the same connections as the classic file."""
    recs = _wikipedia_records()
    third = len(recs) // 3
    isb, custom = block(5, struct.pack("<III", 0, 0, 0)), block(0x00000BAD, b"pen!")
    content = shb() + idb(1) + idb(101, tsresol=9, tsoffset=-1000)
    for i, (us, frame) in enumerate(recs[:third]):
        if i % 10 == 5:             # as raw IP, on the nanosecond interface 1000 s behind
            content += epb(1, (us + 1000 * 10**6) * 1000, frame[14:])
        else:
            content += epb(0, us, frame)
    content += isb + custom + idb(1, tsresol=9, tsoffset=10)
    content += b"".join(epb(2, (us - 10 * 10**6) * 1000 + 7, frame) for us, frame in recs[third:2 * third])
    content += shb(">") + idb(1, endian=">")
    content += b"".join(epb(0, us, frame, ">") for us, frame in recs[2 * third:])
    pcap = tmp_path / "wikipedia.pcapng"
    pcap.write_bytes(content)
    reference, bulk, reference_err, bulk_err = replay_both(pcap, tmp_path, monkeypatch, capsys, small_steps)
    assert_same_logs(reference, bulk)
    assert warnings(bulk_err) == warnings(reference_err) == []
    assert rows_uids_masked(bulk / "conn.log") == rows_uids_masked(
        _recorded(WIKIPEDIA, tmp_path / "original") / "conn.log")


@pytest.mark.parametrize("damage", ["cut-in-block", "two-lengths", "undescribed-interface"])
def test_damaged_pcapng_reads_as_the_reference_reads_it(damage, tmp_path, monkeypatch, capsys, small_steps):
    recs = _wikipedia_records()
    blocks = [epb(0, us, frame) for us, frame in recs]
    bad = blocks[100]
    if damage == "cut-in-block":
        tail = [bad[:len(bad) // 2]]
    elif damage == "two-lengths":
        tail = [bad[:-4] + struct.pack("<I", len(bad) + 4)] + blocks[101:]
    else:
        tail = [epb(3, recs[100][0], recs[100][1])] + blocks[101:]
    pcap = tmp_path / f"{damage}.pcapng"
    pcap.write_bytes(shb() + idb(1) + b"".join(blocks[:100] + tail))
    reference, bulk, reference_err, bulk_err = replay_both(pcap, tmp_path, monkeypatch, capsys, small_steps)
    assert_same_logs(reference, bulk)
    assert warnings(bulk_err) == warnings(reference_err)
    assert "packet record 101" in warnings(bulk_err)[0]


def _recorded(pcap: Path, out: Path) -> Path:
    record_pcap(pcap, out, validate_checksums=False, progress=False)
    return out


@pytest.mark.parametrize("damage", ["cut-in-header", "cut-in-frame", "impossible-length", "short-frame"])
def test_damage_reads_as_the_reference_reads_it(damage, tmp_path, monkeypatch, capsys, small_steps):
    data = WIKIPEDIA.read_bytes()
    at = record_offsets(data)[100]
    if damage == "cut-in-header":
        data = data[:at + 8]
    elif damage == "cut-in-frame":
        data = data[:at + 16 + 30]
    elif damage == "impossible-length":
        data = data[:at + 8] + struct.pack("<II", 300_000, 300_000) + data[at + 16:]
    else:                                   # a 10-byte frame between two records: taken, not run
        data = data[:at] + struct.pack("<IIII", T0, 0, 10, 10) + bytes(10) + data[at:]
    pcap = tmp_path / f"{damage}.pcap"
    pcap.write_bytes(data)
    reference, bulk, reference_err, bulk_err = replay_both(pcap, tmp_path, monkeypatch, capsys, small_steps)
    assert_same_logs(reference, bulk)
    assert warnings(bulk_err) == warnings(reference_err)
    if damage != "short-frame":
        assert "packet record 101" in warnings(bulk_err)[0]


def test_a_signal_stops_the_bulk_loop_between_calls_and_says_where(tmp_path, monkeypatch, capsys, small_steps):
    progress = replay_loop.Replay.progress

    def signal_after_the_first_chunk(self):
        progress(self)
        self.flag.stop, self.flag.signum = True, 15

    monkeypatch.setattr(replay_loop.Replay, "progress", signal_after_the_first_chunk)
    stats = record_pcap(WIKIPEDIA, tmp_path / "out", validate_checksums=False, progress=False)
    (warning,) = warnings(capsys.readouterr().err)
    assert stats["stopped_by_signal"] == 15
    # Stopped where the first chunk ended: one record by the reference loop, then the chunk's.
    ran = 1 + small_steps[0]
    assert f"stopped by signal 15 before packet record {ran + 1}" in warning
    assert "cicd_audit_pcap_interrupted" in (tmp_path / "out" / "weird.log").read_text()
    # What the logs hold is what those records make.
    data = WIKIPEDIA.read_bytes()
    first = tmp_path / "first.pcap"
    first.write_bytes(data[:record_offsets(data)[ran]])
    monkeypatch.undo()
    assert rows_uids_masked(tmp_path / "out" / "conn.log") == rows_uids_masked(
        _recorded(first, tmp_path / "first") / "conn.log")
