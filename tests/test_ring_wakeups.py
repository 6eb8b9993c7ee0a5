"""When the kernel program wakes the reader sleeping on its ring buffer (ca_wake_flags).

A wake-up costs the CPU that made the event, the job's, an irq_work and the
reader a context switch, so a live event wakes the reader only once in
CA_WAKE_EVERY (64) on its CPU, the reader polling on a timer anyway, and a
replayed one never. A reader thread sleeps in epoll on the real program's
ring while DNS queries run through the program with BPF_PROG_TEST_RUN on one
CPU (its wake count is per CPU); the test measures how long it slept.
epoll's readiness is checked when the thread goes to sleep, so the queries
are sent only once it sleeps in epoll_wait (its wchan says so): a wake-up is
then the only way out before the timeout.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from dns_wire import query
from frames import ether
from scapy.layers.inet import IP, UDP

from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
from cicd_audit.recorder.kernel.packet_runner import PacketRunner

pytestmark = pytest.mark.root

SLEEP_S = 2.0
WAKE_EVERY = 64      # CA_WAKE_EVERY in bpf/capture.bpf.c


def _queries(n: int) -> list[bytes]:
    """n DNS queries, each from its own source port: one DNS event each."""
    return [bytes(ether() / IP(src="10.9.0.1", dst="10.9.0.53") / UDP(sport=20000 + i, dport=53)
                  / query(f"q{i}.example.test", id=i)) for i in range(n)]


def _in_epoll_wait(tid: int) -> bool:
    """The thread sleeps in epoll_wait, not merely somewhere (waiting for the GIL is a sleep too)."""
    with open(f"/proc/self/task/{tid}/wchan") as wchan:
        return "epoll" in wchan.read()


def _slept(settings: ProgramSettings, frames: list[bytes]) -> tuple[float, int]:
    """(seconds the reader slept in epoll while the frames ran, records it then found)."""
    program = CaptureProgram(settings, lambda *_: None)
    found, slept = [], []

    def reader():
        started = time.monotonic()
        found.append(program.ring.poll(int(SLEEP_S * 1000), lambda records: None))
        slept.append(time.monotonic() - started)

    thread = threading.Thread(target=reader)
    affinity = os.sched_getaffinity(0)
    try:
        thread.start()
        deadline = time.monotonic() + 10
        while not _in_epoll_wait(thread.native_id):
            assert time.monotonic() < deadline, "the reader thread never went to sleep in epoll_wait"
            time.sleep(0.01)
        os.sched_setaffinity(0, {min(affinity)})
        runner = PacketRunner(program.packet_fn.fd)
        for frame in frames:
            runner.run(frame, 0, mark=len(frame))
    finally:
        os.sched_setaffinity(0, affinity)
        thread.join()
        program.close()
    return slept[0], found[0]


def test_a_few_live_events_leave_the_reader_asleep():
    slept, found = _slept(ProgramSettings(pcap_mode=False), _queries(5))
    assert found == 5
    assert slept >= SLEEP_S - 0.05


def test_the_wake_every_th_live_event_wakes_the_reader():
    slept, found = _slept(ProgramSettings(pcap_mode=False), _queries(WAKE_EVERY))
    assert found == WAKE_EVERY
    assert slept < SLEEP_S / 2


def test_replayed_events_never_wake_the_reader():
    """A replay reads the ring after every frame: nobody sleeps on it."""
    slept, found = _slept(ProgramSettings(pcap_mode=True), _queries(3 * WAKE_EVERY))
    assert found == 2 * 3 * WAKE_EVERY        # a connection's start and its DNS message each
    assert slept >= SLEEP_S - 0.05
