"""The steps of a capture's replay around each packet record, and the reference loop.

`Replay` keeps one replay's state: packet time and the timer sweeps it calls
for (once a second of packet time, as the live recorder sweeps once a second),
what ran, the frames the kernel refused, an interruption. `replay_each` reads
the records one by one and runs each frame through the program with
BPF_PROG_TEST_RUN, in Python: the reference for every capture file, and what
reads the records bulk_replay's compiled loop leaves (link types other than
Ethernet, pcapng's other blocks, damage), around the same steps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from cicd_audit import notices
from cicd_audit.errors import InputError
from cicd_audit.recorder.drivers import linktypes
from cicd_audit.recorder.drivers.capture_file import CaptureFile, Frame
from cicd_audit.recorder.drivers.recording import Recording
from cicd_audit.recorder.drivers.stop_flag import StopFlag
from cicd_audit.recorder.kernel.packet_runner import FrameRejected, PacketRunner

SWEEP_INTERVAL_NS = 1_000_000_000   # sweep timers once per second of packet time
# The kernel's packet clock is 64-bit nanoseconds since 1970 (to the year 2554): a record's time
# outside it cannot be given to the program (pcapng's 64-bit timestamps at a coarse if_tsresol, or a
# negative if_tsoffset, can say such times).
TS_NS_MAX = (1 << 64) - 1


def as_zeek_reads_it(ts_ns: int) -> int:
    """The capture time Zeek analyses: libpcap opens a capture at microsecond
    precision and truncates finer timestamps (nanosecond pcap, pcapng with a
    finer if_tsresol) to the microsecond below."""
    return ts_ns - ts_ns % 1000


class Replay:
    """One replay's state and its steps around each packet record: packet time, the sweeps it
    calls for, the frames the kernel refused, an interruption. The loop that reads the records
    and runs their frames is replay_each (the reference) or bulk_replay (compiled)."""

    def __init__(self, flag: StopFlag, pcap: Path, reader: CaptureFile, recording: Recording, bar):
        self.flag, self.pcap, self.reader, self.bar = flag, pcap, reader, bar
        self.session, self.program, self.sweeper = recording.session, recording.program, recording.sweeper
        self.runner = PacketRunner(self.program.packet_fn.fd)
        self.next_sweep: int | None = None
        self.last_ns = 0
        self.packets = 0            # frames run through the program

    def clock(self, ts_ns: int) -> None:
        """Packet time moves to a record's: sweep when a second of it has passed since the last sweep."""
        if self.next_sweep is None:
            self.next_sweep = min(ts_ns + SWEEP_INTERVAL_NS, TS_NS_MAX)
        elif ts_ns >= self.next_sweep:
            self.sweeper.sweep(ts_ns)
            self.next_sweep = min(ts_ns + SWEEP_INTERVAL_NS, TS_NS_MAX)
        self.last_ns = max(self.last_ns, ts_ns)

    def interrupted(self, number: int) -> None:
        stopped = f"stopped by signal {self.flag.signum} before packet record {number}"
        notices.say(f"cicd-audit: warning: {self.pcap}: {stopped}; the logs hold what was read")
        self.session.record_failure(stopped)
        self.session.write_recorder_weird(self.last_ns / 1e9 if self.last_ns else time.time(),
                                          "cicd_audit_pcap_interrupted", stopped)

    def rejected(self, number: int, ts_ns: int, why: str) -> None:
        self.session.count_unparsable()
        self.session.write_recorder_weird(ts_ns / 1e9, "cicd_audit_frame_rejected", f"packet record {number}: {why}")

    def progress(self) -> None:
        if self.bar is not None:
            self.bar.update(self.reader.position - self.bar.n)

    def finish_progress(self) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()


def _run_frame(replay: Replay, frame: Frame, ether: bytes, ts_ns: int) -> None:
    try:
        # The mark carries the frame's captured length: a frame longer than a test-run
        # skb is cut, but Zeek saw all of it (gaps, ICMP counts). The wire length
        # moves with the link header the frame was given.
        replay.runner.run(ether, ts_ns, mark=len(ether), wire_len=frame.wire_len + len(ether) - len(frame.data))
    except FrameRejected as exc:
        replay.rejected(frame.number, ts_ns, str(exc))
    else:
        replay.program.poll()
        replay.packets += 1
        if replay.packets % 1000 == 0:
            replay.progress()


def _replay_record(replay: Replay, frame: Frame) -> None:
    """One packet record: its time checked and clocked, then every IP frame it carries run."""
    ts_ns = as_zeek_reads_it(frame.ts_ns)
    if not 0 <= ts_ns <= TS_NS_MAX:
        replay.rejected(frame.number, replay.last_ns, f"its time ({frame.ts_ns} ns since 1970) is outside "
                                                      f"what the kernel's 64-bit packet clock holds")
        return
    replay.clock(ts_ns)
    try:
        ethers = linktypes.to_ethernet_frames(frame.linktype, frame.data, frame.big_endian)
    except linktypes.UnsupportedLinkType as exc:
        raise InputError(f"{replay.pcap}: {exc}") from exc
    except linktypes.LinkLayerWeird as exc:      # Zeek's weird about no flow: the frame goes no further
        replay.session.write_weird(ts_ns / 1e9, exc.name, exc.addl, source=exc.source)
        return
    if not ethers:              # nothing IP in it (ARP, 802.11 management, a loopback frame of another family)
        replay.session.counters.non_ip_frames += 1
    for ether in ethers:        # several for an 802.11 A-MSDU, each its own packet as in Zeek
        _run_frame(replay, frame, ether, ts_ns)


def replay_each(replay: Replay, frames: Iterator[Frame], limit: int | None = None) -> bool:
    """The reference loop: frame by frame, in Python. Runs at most `limit` records (None: all);
    returns True when the file may have more, False when it ended or a signal stopped it."""
    taken = 0
    for frame in frames:
        if replay.flag.stop:
            replay.interrupted(frame.number)
            return False
        _replay_record(replay, frame)
        taken += 1
        if taken == limit:
            return True
    return False
