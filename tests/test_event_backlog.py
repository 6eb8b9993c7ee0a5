"""recorder/kernel/backlog.py: events taken out of the ring buffer at once, handled as time allows.

1. The backlog alone: order, the time budget, PROCESS events handled when
   taken, and the memory limit at which taking waits for handling.
2. The capture program with a 64 KB ring and a handler far slower than the
   packets: a poll with a time budget returns within it and leaves the ring
   empty, so a second burst that would not have fit beside the first is
   taken whole; in the end every event is handled once, in order, and the
   kernel dropped none.
"""

from __future__ import annotations

import struct
import time

import pytest
from scapy.all import IP, UDP, Ether, Raw

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.kernel.backlog import OVERHEAD_BYTES, EventBacklog
from cicd_audit.recorder.logs import events


def record(event_type: int, n: int, size: int = 32) -> bytes:
    """A fake ring record: the event header's type, then n, padded to size."""
    return struct.pack("<II", event_type, n).ljust(size, b"\0")


def numbers(handled: list[bytes]) -> list[int]:
    return [struct.unpack_from("<I", r, 4)[0] for r in handled]


def test_events_wait_in_order_and_are_handled_within_the_budget():
    handled = []

    def slow(rec, size):
        assert size == len(rec)
        time.sleep(0.002)
        handled.append(rec)

    backlog = EventBacklog(slow)
    backlog.take([record(abi.EventType.DNS, i) for i in range(100)])
    assert handled == [] and backlog.events == 100
    t = time.monotonic()
    assert backlog.handle_for(0.02) is False
    assert time.monotonic() - t < 0.2
    assert 0 < len(handled) < 100
    backlog.take([record(abi.EventType.CONN_END, 100)])
    backlog.handle_all()
    assert numbers(handled) == list(range(101))
    assert backlog.events == 0 and backlog.bytes == 0
    assert backlog.peak_events == 100


def test_a_process_event_is_handled_when_taken_the_rest_waits():
    handled = []
    backlog = EventBacklog(lambda rec, size: handled.append(rec))
    backlog.take([record(abi.EventType.DNS, 0), record(abi.EventType.PROCESS, 1), record(abi.EventType.DNS, 2)])
    assert numbers(handled) == [1]          # /proc is read while the process still runs
    backlog.handle_all()
    assert numbers(handled) == [1, 0, 2]


def test_at_the_limit_taking_handles_the_oldest_first():
    handled = []
    per_record = 32 + OVERHEAD_BYTES
    backlog = EventBacklog(lambda rec, size: handled.append(rec), limit_bytes=10 * per_record)
    backlog.take([record(abi.EventType.DNS, i) for i in range(10)])
    assert handled == []
    backlog.take([record(abi.EventType.DNS, i) for i in range(10, 13)])
    assert numbers(handled) == [0, 1, 2]
    assert backlog.bytes == 10 * per_record
    backlog.handle_all()
    assert numbers(handled) == list(range(13))


# -- with the capture program -----------------------------------------------------

RING = 64 * 1024


def dns_query(i: int) -> bytes:
    qname = b"".join(bytes([len(x)]) + x for x in (f"q{i}".encode(), b"burst", b"test")) + b"\0"
    dns = struct.pack("!6H", i, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!2H", 1, 1)
    return bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=30000 + i, dport=53) / Raw(dns))


@pytest.mark.root
def test_a_burst_beyond_the_ring_is_taken_while_the_handler_lags():
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
    from cicd_audit.recorder.kernel.packet_runner import PacketRunner

    handled = []

    def slow(data, size):
        time.sleep(0.002)
        handled.append(data)

    settings = ProgramSettings(pcap_mode=True, validate_checksums=False, ringbuf_bytes=RING)
    program = CaptureProgram(settings, slow)
    try:
        runner = PacketRunner(program.packet_fn.fd)
        burst = 300
        for i in range(burst):
            runner.run(dns_query(i), 1_000_000_000 + i * 1000)
        first_burst_bytes = program.ring.unread_bytes()
        assert RING / 2 < first_burst_bytes < RING, "the burst must fill most of the ring, not overflow it"
        t = time.monotonic()
        program.poll(0, budget_s=0.03)
        assert time.monotonic() - t < 0.5, "a poll with a budget must not wait for every handler"
        assert program.ring.unread_bytes() == 0 and program.backlog.events > 0
        for i in range(burst, 2 * burst):     # would not have fit beside the first burst
            runner.run(dns_query(i), 1_000_000_000 + i * 1000)
        program.poll()
        assert program.stats()[abi.stat_key(abi.Stat.RB_DROP_DNS)] == 0
        ids = [struct.unpack_from("!H", events.decode(d, len(d))[1])[0] for d in handled]
        assert ids == list(range(2 * burst))
    finally:
        program.close()
