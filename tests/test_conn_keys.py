"""A replay's sweeps take the connection keys from the kernel's events (recorder/kernel/conn_keys.py):
CONN_START (pcap mode) notes a key, CONN_END forgets it, in the ring's order. Checked on records
made here, and through the real program against the tables' own listing: the same keys, in the
order the connections were made, with no walk of the tables; when a start was lost the sweeps list
the tables again; and a key the events missed is reported when the capture is drained."""

from __future__ import annotations

import json

import pytest
from frames import ether, udp_flows
from scapy.layers.inet import IP, TCP
from scapy.utils import wrpcap

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.kernel.conn_keys import ConnKeys
from cicd_audit.zeeklog.reader import read_log

T0 = 1_700_000_000 * 10**9


def _key(a: bytes, b: bytes, port: int) -> bytes:
    def address(raw: bytes) -> bytes:
        return abi.V4_MAPPED_PREFIX + raw if len(raw) == 4 else raw
    key = abi.ConnKey(port=(port, 53), ip_proto=17)
    abi.ctypes.memmove(abi.ctypes.addressof(key), address(a) + address(b), 32)
    return bytes(key)


def _record(event_type: abi.EventType, key: bytes, due_ns: int = 0) -> bytes:
    structure = abi.ConnStartEvent if event_type == abi.EventType.CONN_START else abi.ConnEndEvent
    event = structure()
    event.hdr.type, event.hdr.size = event_type, abi.ctypes.sizeof(structure)
    abi.ctypes.memmove(abi.ctypes.addressof(event.key), key, len(key))
    if due_ns:
        event.due_ns = due_ns
    return bytes(event)


V4_A, V4_B = _key(b"\x0a\0\0\x01", b"\x0a\0\0\x35", 1000), _key(b"\x0a\0\0\x01", b"\x0a\0\0\x35", 1001)
V6_A = _key(bytes(15) + b"\x01", bytes(15) + b"\x35", 1000)
MIXED = _key(b"\x0a\0\0\x01", bytes(15) + b"\x35", 1000)       # one address IPv4-mapped: conns6's


def test_starts_note_keys_ends_forget_them_and_only_the_starts_are_taken_out():
    keys = ConnKeys()
    other = b"\x03\0\0\0" + bytes(60)          # a weird: passed on untouched
    end_a = _record(abi.EventType.CONN_END, V4_A)
    records = [_record(abi.EventType.CONN_START, key) for key in (V4_B, V4_A, V6_A, MIXED)] + [other, end_a]
    assert keys.follow(records) == [other, end_a]
    assert keys.keys() == ([V4_B], [V6_A, MIXED])        # in the order the connections were made


def test_a_reused_key_ends_then_starts_again_and_stays():
    keys = ConnKeys()
    keys.follow([_record(abi.EventType.CONN_START, V4_A)])
    keys.follow([_record(abi.EventType.CONN_END, V4_A), _record(abi.EventType.CONN_START, V4_A)])
    assert keys.keys() == ([V4_A], [])
    keys.follow([_record(abi.EventType.CONN_END, V4_A), _record(abi.EventType.CONN_END, V6_A)])   # an end twice
    assert keys.keys() == ([], [])


def test_a_timer_sweep_gets_the_keys_whose_connections_can_have_ended():
    keys = ConnKeys()
    keys.follow([_record(abi.EventType.CONN_START, V4_A, due_ns=T0 + 10), _record(abi.EventType.CONN_START, V6_A, due_ns=T0),
                 _record(abi.EventType.CONN_START, V4_B, due_ns=T0 + 5)])
    assert keys.keys(due_by=T0 - 1) == ([], [])
    assert keys.keys(due_by=T0 + 5) == ([V4_B], [V6_A])
    assert keys.keys(due_by=T0 + 10) == ([V4_A, V4_B], [V6_A])      # still the order they were made in
    assert keys.keys() == ([V4_A, V4_B], [V6_A])


def test_listed_keys_never_followed_are_counted():
    keys = ConnKeys()
    keys.follow([_record(abi.EventType.CONN_START, V4_A)])
    assert keys.unknown([V4_A], []) == 0
    assert keys.unknown([V4_A, V4_B], [V6_A]) == 2


def test_keys_listed_from_the_tables_come_back_in_the_order_their_connections_were_made():
    keys = ConnKeys()
    keys.follow([_record(abi.EventType.CONN_START, key) for key in (V4_B, V6_A, V4_A)])
    lost = _key(b"\x0a\0\0\x01", b"\x0a\0\0\x35", 999)      # never followed: after the others, by its bytes
    assert keys.ordered([lost, V4_A, V4_B], [MIXED, V6_A]) == ([V4_B, V4_A, lost], [V6_A, MIXED])
    assert keys.ordered([V4_A], []) == ([V4_A], [])          # a followed key the tables no longer hold is left out


def _sorted(keys: tuple[list[bytes], list[bytes]]) -> tuple[list[bytes], list[bytes]]:
    return sorted(keys[0]), sorted(keys[1])


@pytest.mark.root
def test_a_replays_sweeps_send_the_keys_the_events_gave_without_listing_the_tables(monkeypatch):
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
    from cicd_audit.recorder.kernel.packet_runner import PacketRunner
    from cicd_audit.recorder.kernel.sweeper import Sweeper

    program = CaptureProgram(ProgramSettings(pcap_mode=True, validate_checksums=False), lambda data, size: None)
    try:
        runner, sweeper = PacketRunner(program.packet_fn.fd), Sweeper(program, program.sweep_fn.fd)
        early, late = udp_flows(3), udp_flows(2, first=10)
        for frame in early:
            runner.run(bytes(frame), T0)
        # A SYN, then after the late flows a SYN with a new initial sequence number: Zeek takes the
        # second for a new connection, so the key ends and starts again, after the late ones.
        syn = ether() / IP(src="192.0.2.9", dst="198.51.100.9") / TCP(sport=5555, dport=80, flags="S", seq=1)
        runner.run(bytes(syn), T0)
        for frame in late:
            runner.run(bytes(frame), T0 + 50 * 10**9)
        syn[TCP].seq = 1000
        runner.run(bytes(syn), T0 + 51 * 10**9)
        listings = []
        for table in (program.conns4, program.conns6):
            list_keys = table.keys
            monkeypatch.setattr(table, "keys", lambda *a, list_keys=list_keys: listings.append(1) or list_keys(*a))

        followed = program.conn_keys()
        assert listings == []
        listed = program.conn_keys(listed=True)
        assert _sorted(followed) == _sorted(listed) and len(followed[0]) == 6 and len(followed[1]) == 5
        # conns4's keys in the order their connections were made, the reused TCP key where it started again
        responders = [bytes(abi.ConnKey.from_buffer_copy(key).addr[1])[15] for key in followed[0]]
        assert responders == [1, 2, 3, 11, 12, 9]

        # A timer sweep gets a connection from its protocol's shortest timer on: UDP's 10 s after its
        # first packet (dns_session_timeout; udp_inactivity_timeout is 60 s), TCP's 5 s (tcp_attempt_delay
        # and others; the reused key's connection started at 51 s).
        def due(seconds: float) -> tuple[int, int]:
            v4, v6 = program.conn_keys(due_by=T0 + int(seconds * 10**9))
            return len(v4), len(v6)
        assert [due(s) for s in (9.999, 10, 55.999, 56, 59.999, 60)] == [(0, 0), (3, 3), (3, 3), (4, 3), (4, 3), (6, 5)]

        listings.clear()
        sweeper.sweep(T0 + 100 * 10**9)        # past UDP's 60 s for the early flows, not the late ones
        program.poll()
        followed = program.conn_keys()
        assert listings == []
        assert _sorted(followed) == _sorted(program.conn_keys(listed=True))
        assert (len(followed[0]), len(followed[1])) == (2, 2)     # the late flows; the lone SYN timed out too
        assert program.untracked_conns == 0
    finally:
        program.close()


@pytest.mark.root
def test_when_a_start_is_lost_the_sweeps_list_the_tables():
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
    from cicd_audit.recorder.kernel.packet_runner import PacketRunner
    from cicd_audit.recorder.kernel.sweeper import Sweeper

    # One page of ring: 100 connections' starts do not fit while nobody takes them.
    settings = ProgramSettings(pcap_mode=True, max_conns=200, ringbuf_bytes=4096)
    program = CaptureProgram(settings, lambda data, size: None)
    try:
        runner, sweeper = PacketRunner(program.packet_fn.fd), Sweeper(program, program.sweep_fn.fd)
        for frame in udp_flows(50):
            runner.run(bytes(frame), T0)
        assert program.stats()[abi.stat_key(abi.Stat.RB_DROP_CONN_START)] > 0
        keys = program.conn_keys()
        assert (len(keys[0]), len(keys[1])) == (50, 50)
        assert _sorted(keys) == _sorted(program.conn_keys(listed=True))
        sweeper.sweep(T0 + 100 * 10**9)
        program.poll()
        assert program.conn_keys(listed=True) == ([], [])
    finally:
        program.close()


@pytest.mark.root
def test_a_capture_drained_at_its_end_writes_its_rows_in_one_order(tmp_path):
    """The connections still open at the end of a capture end in the order they were made (IPv4's,
    then IPv6's), not in the order the tables' hashing (seeded anew by every load) lays them out."""
    from cicd_audit.recorder.drivers import pcap_replay

    pcap = tmp_path / "flows.pcap"
    wrpcap(str(pcap), udp_flows(60))
    orders = []
    for run in range(2):
        pcap_replay.record_pcap(pcap, tmp_path / f"out{run}", validate_checksums=False, progress=False)
        conns = list(read_log(tmp_path / f"out{run}" / "conn.log")[1])
        orders.append([(c["ts"], c["id.resp_h"]) for c in conns])
    assert len(orders[0]) == 120 and orders[0] == orders[1]
    by_family = [ts for ts, resp in orders[0] if ":" not in resp] + [ts for ts, resp in orders[0] if ":" in resp]
    assert [ts for ts, _ in orders[0]] == by_family and by_family[:60] == sorted(by_family[:60])
    assert by_family[60:] == sorted(by_family[60:])


@pytest.mark.root
def test_a_connection_the_events_missed_is_reported_when_the_capture_is_drained(tmp_path, monkeypatch):
    """A recorder bug's symptom, made on purpose: the followed keys lose a start. The drain lists
    the tables, ends the connection all the same, and the recording says what happened."""
    from cicd_audit.recorder.drivers import pcap_replay
    from cicd_audit.recorder.kernel import conn_keys

    follow = conn_keys.ConnKeys.follow

    def follow_but_forget_the_first(self, records):
        kept = follow(self, records)
        if self._v4 and not getattr(self, "forgot", False):
            self._v4.pop(next(iter(self._v4)))
            self.forgot = True
        return kept

    monkeypatch.setattr(conn_keys.ConnKeys, "follow", follow_but_forget_the_first)
    pcap = tmp_path / "flows.pcap"
    wrpcap(str(pcap), udp_flows(3))
    stats = pcap_replay.record_pcap(pcap, tmp_path / "out", validate_checksums=False, progress=False)
    assert stats["incomplete"]
    status = json.loads((tmp_path / "out" / "recorder.status").read_text())
    assert status["recording"] == "incomplete"
    assert any("1 connections were left out of the replay's timer sweeps" in why for why in status["failures"])
    conns = list(read_log(tmp_path / "out" / "conn.log")[1])
    assert sorted(c["id.resp_h"] for c in conns if c["id.orig_h"] == "192.0.2.1") == [
        f"198.51.100.{i + 1}" for i in range(3)]


@pytest.mark.root
def test_a_live_recordings_drain_lists_the_oldest_connection_first(monkeypatch):
    """Live, no event follows the connections, so the drain looks up when each one's first packet
    came: its rows are written in that order, not in the order of the tables' hashing."""
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
    from cicd_audit.recorder.kernel.packet_runner import PacketRunner

    program = CaptureProgram(ProgramSettings(pcap_mode=False), lambda data, size: None)
    try:
        assert program.followed_keys is None
        runner = PacketRunner(program.packet_fn.fd)
        flows = udp_flows(40)
        for frame in flows[::-1]:              # the last flow's packets first
            runner.run(bytes(frame), T0)
        v4, v6 = program.conn_keys(listed=True)
        responders = [bytes(abi.ConnKey.from_buffer_copy(key).addr[1])[15] for key in v4 + v6]
        newest_first = range(40, 0, -1)
        assert responders == list(newest_first) + [int(str(n), 16) for n in newest_first]   # 2001:db8:1::40 is 0x40
        # A timer sweep lists them as the tables hold them: no lookup per key on every sweep.
        looked_up = []
        for table in (program.conns4, program.conns6):
            monkeypatch.setattr(table, "lookup", lambda raw: looked_up.append(raw))
        assert _sorted(program.conn_keys()) == _sorted((v4, v6)) and looked_up == []
    finally:
        program.close()
