"""Several holes in one direction of a TCP connection at once: missed_bytes as Zeek counts them.

Zeek's reassembler keeps every block received above a hole; when the peer
acknowledges past them, each hole before a block is a content gap
(TCP_Reassembler::Undelivered). The kernel keeps up to four such blocks per
direction (bpf/tcp_blocks.h); a fifth apart from them joins the nearest one,
the hole between counted as received, and capture_stats.log's
tcp_holes_merged counts each such merge. Each scenario is one connection of
10-byte segments, some never captured; the expected rows are worked through
from Zeek's code in the comments.
"""

from __future__ import annotations

import os

import pytest
from test_conn_semantics_tcp import T0, Flow, write_capture
from test_record_pcap import record, rows

pytestmark = [pytest.mark.root]

SEGMENT = 10


def with_holes(flow: Flow, side: str, pattern: str) -> list[int]:
    """Send one 10-byte segment per letter of pattern: 's' sent, 'l' lost (its bytes skipped).
    Returns the lost segments' sequence numbers."""
    lost = []
    for letter in pattern:
        if letter == "l":
            lost.append(flow.seq[side])
            flow.seq[side] += SEGMENT
        else:
            flow.send(side, "PA", b"d" * SEGMENT)
    return lost


def closed(flow: Flow) -> Flow:
    """Every byte acknowledged, then both FINs."""
    return flow.send("s", "A").send("c", "A").send("c", "FA").send("s", "FA").send("c", "A")


def scenarios() -> dict[int, Flow]:
    f = {}
    # Three holes, each followed by a segment that is held; the ACK of all of it makes three
    # gaps of 10 (one 'G': the letter is scaled, at 1, 10, 100 gaps). One held block would
    # have counted the first hole alone.
    three = Flow(42001, 7201, T0).handshake()
    with_holes(three, "c", "slslsls")
    f[42001] = closed(three)
    # The same holes, refilled last one first: the second refill joins two blocks into
    # one, the third reaches the delivered data. Nothing is missing.
    refilled = Flow(42002, 7202, T0 + 1).handshake()
    for seq in reversed(with_holes(refilled, "c", "slslsls")):
        refilled.send("c", "PA", b"r" * SEGMENT, seq=seq, advance=False)
    f[42002] = closed(refilled)
    # Holes on both sides at once: each direction has its own list.
    both = Flow(42003, 7203, T0 + 2).handshake()
    with_holes(both, "c", "slsls")
    with_holes(both, "s", "lslslls")
    f[42003] = closed(both)
    # Nine holes, each followed by a held segment: nine blocks, five more than a list holds.
    # The fifth to the ninth each join the nearest block, the one before it, so the holes
    # before them count as received: 40 missed, not 90.
    nine = Flow(42004, 7204, T0 + 3).handshake()
    with_holes(nine, "c", "s" + "ls" * 9)
    f[42004] = closed(nine)
    # Data held in a block that then grows on both ends (no second hole): one block.
    grown = Flow(42005, 7205, T0 + 4).handshake()
    first = with_holes(grown, "c", "sllsl")
    grown.send("c", "PA", b"g" * SEGMENT, seq=first[1], advance=False)     # before the held block
    grown.send("c", "PA", b"g" * SEGMENT, seq=first[2], advance=False)     # after it
    f[42005] = closed(grown)
    return f


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tcp-holes")
    out = tmp / "out"
    r = record(write_capture(scenarios().values(), tmp / "holes.pcap"), out)
    assert r.returncode == 0, r.stderr
    stats = rows(out, "capture_stats")
    assert len(stats) == 1
    return {row["id.orig_p"]: row for row in rows(out, "conn")}, stats[0]


def test_each_hole_before_a_held_block_is_a_gap(recorded):
    row = recorded[0][42001]
    assert row["missed_bytes"] == 3 * SEGMENT
    assert (row["history"], row["conn_state"]) == ("ShADaGFf", "SF")
    assert row["orig_bytes"] == 7 * SEGMENT


def test_holes_refilled_in_any_order_leave_nothing_missing(recorded):
    row = recorded[0][42002]
    assert row["missed_bytes"] == 0
    assert "G" not in row["history"]


def test_both_directions_keep_their_own_blocks(recorded):
    row = recorded[0][42003]
    assert row["missed_bytes"] == 2 * SEGMENT + 4 * SEGMENT
    assert "G" in row["history"] and "g" in row["history"]


def test_more_blocks_than_a_list_holds_join_the_nearest_and_say_so(recorded):
    rows, stats = recorded
    assert rows[42004]["missed_bytes"] == 4 * SEGMENT
    assert stats["tcp_holes_merged"] == 5          # this connection's, and no other's


def test_a_block_that_grows_at_both_ends_stays_one_block(recorded):
    row = recorded[0][42005]
    assert row["missed_bytes"] == SEGMENT          # the last hole, never refilled


def _refill_first_hole(flow: Flow, lost: list[int]) -> None:
    flow.send("c", "PA", b"r" * SEGMENT, seq=lost[0], advance=False)


def _one_more_hole(flow: Flow, lost: list[int]) -> None:
    with_holes(flow, "c", "ls")


@pytest.mark.parametrize("then, expected_missed", [
    # The ACK of everything: the evicted connection counts the hole below its span only.
    (None, [SEGMENT, 2 * SEGMENT, 2 * SEGMENT]),
    # The first hole refilled: the others' first block is delivered and their second hole
    # stays one; the evicted one's span is delivered whole, its second hole with it.
    (_refill_first_hole, [0, SEGMENT, SEGMENT]),
    # One more hole and block: the others list three; the evicted one's span takes the block.
    (_one_more_hole, [SEGMENT, 3 * SEGMENT, 3 * SEGMENT]),
], ids=["acked", "refilled", "one-more-hole"])
def test_a_list_evicted_for_room_stands_as_its_span_and_says_so(tmp_path, then, expected_missed):
    """Room for two lists, and three connections that each hold two blocks at once: making the
    third list evicts one of the first two (the map is an LRU). Whatever comes next for that
    connection (an ACK, data reaching its blocks, another block) finds no list: its span stands
    for the blocks, the holes inside it counted as received, once in tcp_holes_merged."""
    from cicd_audit.recorder.drivers.pcap_replay import record_pcap
    from cicd_audit.recorder.kernel.bpf_program import ProgramSettings

    flows = [Flow(42101 + i, 7301 + i, T0 + i).handshake() for i in range(3)]
    lost = [with_holes(flow, "c", "slsls") for flow in flows]     # two blocks: a list each, made in turn
    for i, flow in enumerate(flows):
        if then is not None:
            flow.t = T0 + 5 + i                          # after all three lists
            then(flow, lost[i])
        flow.t = T0 + 10 + i                             # then every ACK
        closed(flow)
    pcap = write_capture(flows, tmp_path / "evicted.pcap")
    settings = ProgramSettings(pcap_mode=True, validate_checksums=False, tcp_block_lists=2)
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})             # one CPU: the LRU's free slots are that CPU's
    try:
        stats = record_pcap(pcap, tmp_path / "out", settings=settings, progress=False)
    finally:
        os.sched_setaffinity(0, affinity)
    missed = sorted(row["missed_bytes"] for row in rows(tmp_path / "out", "conn"))
    assert missed == expected_missed
    assert stats["tcp_holes_merged"] == 1


def test_a_live_recording_keeps_one_block_and_counts_what_joins_it():
    """Live, TC sees every segment the host sent or received, so a hole is filled by its retransmission
    and no list is kept (bpf/tcp_blocks.h): a block apart from the held one joins it, counted."""
    from cicd_audit.recorder.kernel import abi
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings
    from cicd_audit.recorder.kernel.packet_runner import PacketRunner

    flow = Flow(42201, 7401, T0).handshake()
    with_holes(flow, "c", "slslsls")                    # three blocks apart: the second and third join
    program = CaptureProgram(ProgramSettings(pcap_mode=False), lambda data, size: None)
    try:
        runner = PacketRunner(program.packet_fn.fd)
        for packet in flow.packets:
            runner.run(bytes(packet), int(float(packet.time) * 1e9))
        assert program.stats()[abi.stat_key(abi.Stat.TCP_HOLES_MERGED)] == 2
    finally:
        program.close()
