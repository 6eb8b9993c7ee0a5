"""The connection tables: IPv4 and IPv6 connections live in two maps (bpf/capture.bpf.c,
struct ca_conn_key4), each holding up to max_conns. Run through the real program
with pcap input and a tiny table: each family fills on its own, every packet that
found no room is counted in capture_stats.log, and the connections that fit come
back out of both maps at the end of the capture with their addresses intact.
The timer sweep (one address family per request) ends idle connections of both
families, across more than one request's worth of keys.
"""

from __future__ import annotations

import ctypes

import pytest
from frames import udp_flows
from scapy.utils import wrpcap

from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root]

MAX_CONNS = 4
FLOWS = 6          # per family: two more than the table holds


def test_each_family_fills_its_own_table_and_every_overflow_is_counted(tmp_path):
    from cicd_audit.recorder.drivers import pcap_replay
    from cicd_audit.recorder.kernel.bpf_program import ProgramSettings

    pcap = tmp_path / "flows.pcap"
    wrpcap(str(pcap), udp_flows(FLOWS))
    settings = ProgramSettings(pcap_mode=True, validate_checksums=False, max_conns=MAX_CONNS)
    stats = pcap_replay.record_pcap(pcap, tmp_path / "out", validate_checksums=False, progress=False,
                                    settings=settings)

    conns = list(read_log(tmp_path / "out" / "conn.log")[1])
    # The first four flows of each family got a connection; the last two of each found the table full.
    assert sorted((c["id.orig_h"], c["id.resp_h"], c["id.orig_p"]) for c in conns) == sorted(
        [("192.0.2.1", f"198.51.100.{i + 1}", 40000 + i) for i in range(MAX_CONNS)]
        + [("2001:db8::1", f"2001:db8:1::{i + 1}", 40000 + i) for i in range(MAX_CONNS)])
    assert all(c["orig_pkts"] == 1 and c["orig_ip_bytes"] > 0 for c in conns)
    assert stats["conn_table_full"] == 2 * (FLOWS - MAX_CONNS)
    capture_stats = list(read_log(tmp_path / "out" / "capture_stats.log")[1])
    assert capture_stats[-1]["conn_table_full"] == 2 * (FLOWS - MAX_CONNS)


def test_the_timer_sweep_ends_idle_connections_of_both_families():
    from cicd_audit.recorder.kernel import abi
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
    from cicd_audit.recorder.kernel.packet_runner import PacketRunner
    from cicd_audit.recorder.kernel.sweeper import Sweeper
    from cicd_audit.recorder.logs import events

    ended = []

    def on_event(data, size):
        event = events.decode(data, size)
        if isinstance(event, abi.ConnEndEvent):
            ended.append((bytes(event.key), event.reason))

    flows = abi.SWEEP_KEYS_MAX + 8          # per family: more than one sweep request holds
    program = CaptureProgram(ProgramSettings(pcap_mode=True, validate_checksums=False), on_event)
    try:
        runner, sweeper = PacketRunner(program.packet_fn.fd), Sweeper(program, program.sweep_fn.fd)
        t0 = 1_700_000_000 * 10**9
        for frame in udp_flows(flows):
            runner.run(bytes(frame), t0)
        program.poll()
        v4_keys, v6_keys = program.conn_keys()
        assert (len(v4_keys), len(v6_keys)) == (flows, flows)

        sweeper.sweep(t0 + 30 * 10**9)             # within UDP's 60 s inactivity timeout
        program.poll()                             # the sweep takes its events; the caller handles them
        assert ended == []
        sweeper.sweep(t0 + 120 * 10**9)            # past it: every connection ends, by timeout
        program.poll()
        assert sorted(ended) == sorted((key, abi.EndReason.TIMEOUT) for key in v4_keys + v6_keys)
        assert program.conn_keys() == ([], [])
    finally:
        program.close()


def test_the_ipv6_table_is_listed_from_its_first_connection_on(monkeypatch):
    """Listing a table walks all its buckets: conns6 is spared that until an IPv6 connection exists."""
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
    from cicd_audit.recorder.kernel.packet_runner import PacketRunner

    program = CaptureProgram(ProgramSettings(pcap_mode=True, validate_checksums=False), lambda data, size: None)
    try:
        listings = []
        list_keys = program.conns6.keys
        monkeypatch.setattr(program.conns6, "keys", lambda *a: listings.append(1) or list_keys(*a))
        runner, t0 = PacketRunner(program.packet_fn.fd), 1_700_000_000 * 10**9
        v4_frame, v6_frame = (bytes(frame) for frame in udp_flows(1))
        runner.run(v4_frame, t0)
        v4_keys, v6_keys = program.conn_keys(listed=True)
        assert (len(v4_keys), v6_keys, listings) == (1, [], [])
        runner.run(v6_frame, t0 + 1000)
        v4_keys, v6_keys = program.conn_keys(listed=True)
        assert (len(v4_keys), len(v6_keys), len(listings)) == (1, 1, 1)
    finally:
        program.close()


def _idle_connections(program, flows: int) -> tuple[list[bytes], list[bytes]]:
    from cicd_audit.recorder.kernel.packet_runner import PacketRunner

    runner = PacketRunner(program.packet_fn.fd)
    for frame in udp_flows(flows):
        runner.run(bytes(frame), 1_700_000_000 * 10**9)
    program.poll()
    return program.conn_keys()


@pytest.mark.parametrize("kernel_finishes", [True, False], ids=["whole-requests", "requests-cut-short"])
def test_a_sweep_request_runs_a_key_a_tail_call_and_a_request_cut_short_is_sent_again_in_halves(kernel_finishes):
    """ca_sweep takes one key a run and tail-calls itself for the next: a full request (31 tail
    calls) finishes on this kernel. Were a kernel to stop the chain short, the sweeper sends the keys
    again in halves: here requests of more than 4 keys are answered "unfinished" without running."""
    from cicd_audit.recorder.kernel import abi
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
    from cicd_audit.recorder.kernel.sweeper import Sweeper
    from cicd_audit.recorder.logs import events

    ended = []

    def on_event(data, size):
        event = events.decode(data, size)
        if isinstance(event, abi.ConnEndEvent):
            ended.append(bytes(event.key))

    program = CaptureProgram(ProgramSettings(pcap_mode=True, validate_checksums=False), on_event)
    try:
        v4_keys, v6_keys = _idle_connections(program, abi.SWEEP_KEYS_MAX + 8)
        sweeper = Sweeper(program, program.sweep_fn.fd)
        run, verdicts, sizes = sweeper.runner.run, [], []

        def kernel(frame, ts_ns, mark=0):
            count = ctypes.c_uint32.from_buffer_copy(frame, 14 + abi.SweepRequest.count.offset).value
            sizes.append(count)
            verdicts.append(run(frame, ts_ns, mark) if kernel_finishes or count <= 4 else abi.SWEEP_UNFINISHED)
            return verdicts[-1]

        sweeper.runner.run = kernel
        sweeper.sweep(1_700_000_000 * 10**9, drain=True)
        program.poll()
        assert sorted(ended) == sorted(v4_keys + v6_keys)          # each once
        assert program.conn_keys() == ([], [])
        if kernel_finishes:
            assert abi.SWEEP_UNFINISHED not in verdicts and max(sizes) == abi.SWEEP_KEYS_MAX
        else:
            assert max(size for size, verdict in zip(sizes, verdicts) if verdict != abi.SWEEP_UNFINISHED) <= 4
    finally:
        program.close()
