"""The compiled conn.log values (recorder/logs/_conn_rows.c) are conn_rows.py's reference's.

conn_values reads a CONN_END event through the kernel program's own struct
(bpf/cicd_audit.h) and computes Zeek's payload sizes and conn_state; the
reference reads the same event through abi.py's ctypes mirror. Both must give
the same tuple for every event the kernel program wrote for ../shared's
traces, and for random events: every endpoint state and flag, sequence
numbers and their wraps at the edges of 32 and 64 bits, histories cut short,
holding a zero byte or bytes past ASCII, and every protocol. conn_end_head
(what the session reads of the event besides the row) likewise.
"""

from __future__ import annotations

import ctypes
import random

import pytest
from shared_data import shared
from test_dns_plain_pair import kernel_events

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.logs import conn_rows

LETTERS = b"ShADadFfRrTtCcGgIiQqWwXx^"
U32_EDGES = (0, 1, 2, 2**31, 2**32 - 2, 2**32 - 1)


def test_the_compiled_values_are_the_ones_in_use_here():
    assert conn_rows._compiled is not None and conn_rows.conn_values is conn_rows._compiled.conn_values


def random_endpoint(ep: abi.Endpoint, rng: random.Random) -> None:
    ep.state = rng.choice((0, 1, 2, 3, 4, 5, 6, 6, 6, rng.randrange(256)))
    ep.prev_state = rng.choice((0, 1, 1, 2, 4, 6, rng.randrange(256)))
    ep.flags = rng.getrandbits(16) if rng.random() < 0.5 else rng.choice((0, abi.EP_SEQ_VALID,
                                                                         abi.EP_SEQ_VALID | abi.EP_SAW_FIN))
    for name in ("start_seq", "last_seq", "ack_seq"):
        setattr(ep, name, rng.choice(U32_EDGES) if rng.random() < 0.3 else rng.getrandbits(32))
    if rng.random() < 0.3:
        ep.ack_seq = (ep.start_seq + rng.choice((0, 1))) % 2**32      # no data acknowledged
    for name in ("seq_wraps", "ack_wraps"):
        setattr(ep, name, rng.choice((0, 0, 0, 1, 2**32 - 1)))
    for name in ("pkts", "ip_bytes", "payload_bytes", "gap_bytes"):
        setattr(ep, name, rng.choice((0, 1, rng.getrandbits(20), rng.getrandbits(64), 2**64 - 1)))


def random_event(rng: random.Random) -> abi.ConnEndEvent:
    ev = abi.ConnEndEvent()
    ev.key.ip_proto = rng.choice((6, 6, 6, 17, 17, 1, 58, 132, 0, rng.randrange(256)))
    c = ev.conn
    for ep in c.ep:
        random_endpoint(ep, rng)
    history = bytes(rng.choice(LETTERS) for _ in range(rng.randrange(abi.HISTORY_MAX + 1)))
    if rng.random() < 0.1:
        history = history[:5] + b"\0" + history[6:]
    if rng.random() < 0.1:
        history = history[:3] + bytes([rng.randrange(0x80, 0x100)]) + history[4:]
    ctypes.memmove(ctypes.addressof(c) + abi.Conn.history.offset, history, len(history))
    c.history_len = rng.choice((len(history), len(history), max(len(history) - 3, 0), rng.randrange(256)))
    c.first_ns, c.last_ns = rng.getrandbits(64), rng.getrandbits(64)
    # What the session reads besides the row (conn_end_head).
    ev.hdr.ts_ns, c.id, c.flags, ev.reason = rng.getrandbits(64), rng.getrandbits(64), rng.getrandbits(32), rng.randrange(8)
    c.orig_slot = rng.choice((0, 1, rng.randrange(256)))
    c.tunnel_parents[0], c.tunnel_parents[1] = (rng.choice((0, rng.getrandbits(64))) for _ in range(2))
    ctypes.memmove(ctypes.addressof(ev.key), bytes(rng.getrandbits(8) for _ in range(36)), 36)
    return ev


def test_random_events_give_the_references_values():
    rng = random.Random(2026)
    states = set()
    for _ in range(60000):
        ev = random_event(rng)
        expected = conn_rows._conn_values(ev)
        assert conn_rows._compiled.conn_values(ev) == expected, bytes(ev).hex()
        head = conn_rows._conn_end_head(ev)
        if head[7] < 2**64 and head[8] < 2**64:     # no endpoint sums that wrap (no u64 count does)
            assert conn_rows._compiled.conn_end_head(ev) == head, bytes(ev).hex()
        states.add(expected[3])
    assert states >= {"REJ", "RSTR", "RSTRH", "RSTO", "RSTOS0", "SF", "SH", "S2", "SHR", "S3", "S0", "S1", "OTH"}


def test_recorded_events_give_the_references_values(tmp_path):
    oracle = shared("zeek-oracle")
    ends = 0
    for i, case in enumerate(sorted(d for d in oracle.iterdir() if (d / "trace.pcap").is_file())):
        for record in kernel_events(case / "trace.pcap", '"-C"' not in (case / "meta.json").read_text(),
                                    tmp_path / str(i)):
            if record[:4] == abi.EventType.CONN_END.value.to_bytes(4, "little"):
                ev = abi.ConnEndEvent.from_buffer_copy(record)
                assert conn_rows._compiled.conn_values(ev) == conn_rows._conn_values(ev), case.name
                assert conn_rows._compiled.conn_values(record) == conn_rows._conn_values(ev)   # bytes alike
                assert conn_rows._compiled.conn_end_head(record) == conn_rows._conn_end_head(ev), case.name
                ends += 1
    assert ends > 100


def test_a_buffer_of_another_size_is_refused():
    with pytest.raises(ValueError, match="not a CONN_END event's"):
        conn_rows._compiled.conn_values(bytes(ctypes.sizeof(abi.ConnEndEvent) - 1))
    with pytest.raises(ValueError, match="not a CONN_END event's"):
        conn_rows._compiled.conn_end_head(bytes(ctypes.sizeof(abi.ConnEndEvent) + 1))
