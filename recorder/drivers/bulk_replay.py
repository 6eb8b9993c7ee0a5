"""Replay a capture's Ethernet frames in a compiled loop (_replay.c).

Per frame the reference loop (replay_loop.replay_each) spends a few
microseconds of Python around one BPF_PROG_TEST_RUN; on bulk TCP, where a
frame seldom makes an event, that is most of a replay. Here the file is read
in chunks and _replay.Replayer takes whole records from them (classic pcap,
and pcapng's Enhanced Packet Blocks of Ethernet interfaces), one test run
each, and comes back only for what needs Python: a sweep that is due, a
ring record that cannot wait (a fragment to reassemble) or a ring a quarter
full, a refused frame, a record or block it does not read (another block or
link type, damage: the reference loop reads it, or says why it cannot), and
every few thousand records for signals and progress. The events that could
wait are handled first at every stop, in the order the kernel wrote them,
before Python writes anything of its own. The program, the steps around
each record and so the logs are the same as the reference loop's.

The two sides overlap on two cores: a thread runs the compiled loop, which
holds no GIL, while this one handles the events of the frames before (those
that may wait: handling them needs nothing from the kernel). At each stop
both are done before anything else happens, and the ring's new records join
the backlog behind the ones handled, so the order is the kernel's.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from cicd_audit import compiled
from cicd_audit.recorder.drivers.capture_file import CaptureFile, ClassicLayout, Frame, PcapngLayout
from cicd_audit.recorder.drivers.linktypes import LINKTYPE_ETHERNET
from cicd_audit.recorder.drivers.replay_loop import Replay, replay_each
from cicd_audit.recorder.kernel.abi import EventType

_compiled = compiled.load("cicd_audit.recorder.drivers._replay", Path(__file__).with_name("_replay.c"))

CHUNK_BYTES = 4 * 1024 * 1024     # read at a time; a record that does not fit is read by the reference loop
BUDGET_RECORDS = 2048             # records per compiled call: signals and progress are seen between calls
# A chunk the compiled loop took fewer records of than this before a hand-over is followed by a stretch of
# the reference loop, not one record: blocks it cannot read, back to back (an interface description
# before every packet), would otherwise have each chunk read again for a record or two.
FEW_RECORDS = 64
# Events the kernel needs nothing back for: handled at the next stop (a sweep's stop takes the
# connection starts first: conn_keys.py). A fragment cannot wait: its reassembled datagram runs
# through the program before the next frame, as in the reference loop.
MAY_WAIT = (EventType.DNS, EventType.CONN_END, EventType.WEIRD, EventType.TUNNEL, EventType.CONN_START)


class Stop(enum.IntEnum):
    """Why Replayer.run returned (enum stop in _replay.c)."""
    END = 0          # no whole record left in the chunk
    SWEEP = 1        # the record at the offset is due a sweep first
    EVENTS = 2       # the ring holds a record that cannot wait, or is a quarter full
    REJECTED = 3     # the kernel refused the frame just taken
    HAND_OVER = 4    # the record at the offset is for the reference reader
    BUDGET = 5       # enough records for one call


def available(reader: CaptureFile, program) -> bool:
    """Whether this capture can be replayed in bulk: the compiled loop is built, and the file is a
    file (not a pipe), pcapng or classic pcap of Ethernet frames."""
    layout = reader.layout()
    return _compiled is not None and getattr(program, "ring", None) is not None and reader.seekable and (
        isinstance(layout, PcapngLayout) or layout.linktype == LINKTYPE_ETHERNET)


def _read_as(replayer, layout: ClassicLayout | PcapngLayout) -> bool:
    """Tell the compiled loop how the records from here on are laid out; False when it would run
    none of them (a pcapng section without an Ethernet interface)."""
    if isinstance(layout, ClassicLayout):
        replayer.classic(layout.big_endian, layout.nano, layout.limit)
        return True
    # The loop takes an interface's clock as 64-bit integers: one past them is left to the reference loop.
    interfaces = []
    for linktype, units, offset in layout.interfaces:
        fits = 0 < units < 2**64 and -2**63 <= offset < 2**63
        interfaces.append((linktype == LINKTYPE_ETHERNET and fits, units if fits else 1, offset if fits else 0))
    replayer.pcapng(layout.big_endian, interfaces)
    return any(ethernet for ethernet, _, _ in interfaces)


def replay_in_bulk(replay: Replay, reader: CaptureFile, frames: Iterator[Frame]) -> None:
    """The rest of the file, after the sweep clock has started (replay.next_sweep is set).

    frames is the reader's iterator, which reads on from wherever the bulk
    reads stopped: the reference loop takes the records the compiled loop
    leaves, one at a time."""
    may_wait = sum(1 << event_type for event_type in MAY_WAIT)
    replayer = _compiled.Replayer(replay.program.packet_fn.fd, *replay.program.ring.mapped(), may_wait)
    # One thread runs the frames (the compiled loop holds no GIL) while this one handles events.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cicd-audit-frames") as frame_thread:
        _replay_chunks(replay, reader, frames, replayer, frame_thread)


def _replay_chunks(replay: Replay, reader: CaptureFile, frames: Iterator[Frame], replayer,
                   frame_thread: Executor) -> None:
    while True:
        if not _read_as(replayer, reader.layout()):
            # Nothing here for the compiled loop: a stretch by the reference loop, then look again.
            if not replay_each(replay, frames, limit=BUDGET_RECORDS):
                return
            continue
        chunk = reader.read_records(CHUNK_BYTES)
        stop, offset, records = _take_chunk(replay, replayer, frame_thread, chunk, reader.records)
        reader.took(offset, records)
        replay.progress()
        if stop == Stop.END and records and len(chunk) == CHUNK_BYTES:
            continue                       # the next chunk starts at the first record left
        # A record or block for the reference loop (it reads it, or says why it cannot: a pcapng
        # section or interface, another link type, damage), the file's end, a record larger than
        # a chunk, or a signal.
        if not replay_each(replay, frames, limit=1 if records >= FEW_RECORDS else BUDGET_RECORDS):
            return


def _take_chunk(replay: Replay, replayer, frame_thread: Executor, chunk: bytes,
                records_before: int) -> tuple[Stop | None, int, int]:
    """Run the whole records of chunk, doing between calls what the loop stopped for.

    Returns how it ended (END, HAND_OVER, or None when a signal asks to stop), the
    offset of the first record not taken and how many were taken. Every event of
    the frames run is handled, in the kernel's order, before it returns."""
    program = replay.program
    offset = records = 0
    while True:
        if replay.flag.stop:
            program.poll()
            return None, offset, records
        args = (chunk, offset, replay.next_sweep, BUDGET_RECORDS)
        if program.backlog.events:
            # The kernel runs the next frames while Python handles the events of the frames before
            # them: those that may wait, taken at the last stop.
            running = frame_thread.submit(replayer.run, *args)
            program.backlog.handle_all()
            stop, offset = running.result()
        else:
            stop, offset = replayer.run(*args)     # nothing to handle meanwhile: no thread to wake
        records += replayer.records
        replay.packets += replayer.frames
        replay.last_ns = max(replay.last_ns, replayer.last_ns)
        # The new records join the backlog behind the ones handled: the connection starts among
        # them are followed now, before a sweep lists the keys.
        program.take_events()
        if stop == Stop.SWEEP:
            replay.clock(replayer.stop_ts_ns)     # the kernel's alone: its connection ends wait too
        elif stop == Stop.BUDGET:
            replay.progress()
        elif stop == Stop.EVENTS and not replayer.urgent:
            pass                                   # a ring a quarter full: emptied into the backlog
        else:
            # Everything before the stop is handled before it writes or runs anything of its own
            # (a fragment's datagram runs through the program before the next frame).
            program.poll()
            if stop == Stop.REJECTED:
                replay.rejected(records_before + records, replayer.stop_ts_ns,
                                f"the kernel refused a {replayer.stop_length}-byte frame")
            elif stop != Stop.EVENTS:
                return Stop(stop), offset, records
