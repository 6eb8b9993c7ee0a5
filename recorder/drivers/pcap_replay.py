"""Record a pcap or pcapng file: every packet goes through the kernel program.

Each packet runs through ca_packet with BPF_PROG_TEST_RUN, its capture time
as the skb timestamp, exactly as a live packet would at TC. Timers are swept
as packet time advances, and at the end every remaining connection is
drained, like Zeek at the end of a trace.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from cicd_audit import notices
from cicd_audit.recorder.drivers import bulk_replay
from cicd_audit.recorder.drivers.capture_file import CaptureFile
from cicd_audit.recorder.drivers.recording import Recording
from cicd_audit.recorder.drivers.replay_loop import Replay, replay_each
from cicd_audit.recorder.drivers.stop_flag import StopFlag
from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.kernel.bpf_program import ProgramSettings, require_root
from cicd_audit.recorder.logs.dns.wire import ParseOptions
from cicd_audit.recorder.logs.session import SessionLog

PROGRESS_MIN_BYTES = 20_000_000     # a progress bar only for files worth waiting on


def record_pcap(pcap: Path, out_dir: Path, fmt: str = "tsv", validate_checksums: bool = True,
                progress: bool | None = None, settings: ProgramSettings | None = None,
                likely_server_ports: frozenset | None = None, community_id: bool = False,
                dns_options: ParseOptions | None = None, tunnel_max_depth: int | None = None) -> dict:
    """Write Zeek logs for a capture file into out_dir; returns the capture stats.

    likely_server_ports: Zeek's likely_server_ports as (port, "tcp"|"udp")
    pairs (zeek_defaults.parse_likely_server_ports), when Zeek's default set
    is not the one wanted (e.g. to match `zeek -b`). community_id: add Zeek's
    community_id column to conn.log. dns_options, tunnel_max_depth: Zeek's DNS
    settings and Tunnel::max_depth, when not its defaults (recorder/redefs.py).

    SIGINT or SIGTERM ends the replay after the packet in hand: what was read
    is drained into complete logs, recorder.status says "incomplete", and the
    stats carry `stopped_by_signal` (the CLI exits 128 + that signal).
    """
    with StopFlag() as flag:
        return _record_pcap(flag, Path(pcap), out_dir, fmt, validate_checksums, progress, settings,
                            likely_server_ports, community_id, dns_options, tunnel_max_depth)


def _record_pcap(flag: StopFlag, pcap: Path, out_dir: Path, fmt: str, validate_checksums: bool,
                 progress: bool | None, settings: ProgramSettings | None, likely_server_ports: frozenset | None,
                 community_id: bool, dns_options: ParseOptions | None, tunnel_max_depth: int | None) -> dict:
    require_root()                  # before any log file exists
    reader = CaptureFile(pcap)
    try:
        started = time.monotonic()
        session = SessionLog(out_dir, fmt, to_epoch=lambda ns: ns / 1e9, add_community_id=community_id,
                             dns_options=dns_options)
        settings = settings or ProgramSettings(pcap_mode=True, validate_checksums=validate_checksums)
        with Recording(session, settings, likely_server_ports, tunnel_max_depth=tunnel_max_depth,
                       unfinished="the capture file could not be processed to the end") as recording:
            last_ns = _replay(flag, pcap, reader, recording, progress)
            stats = recording.finish(last_ns, str(pcap), time.monotonic() - started)
    finally:
        reader.close()
    if flag.stop:
        stats["stopped_by_signal"] = flag.signum
    _warn_if_offloaded(recording.kernel_stats.get(abi.stat_key(abi.Stat.BAD_CHECKSUMS), 0), stats["packets"], validate_checksums)
    return stats


def _replay(flag: StopFlag, pcap: Path, reader: CaptureFile, recording: Recording, progress: bool | None) -> int:
    """Every packet of the file through the program, timers swept as packet time advances;
    returns the last packet time (ns), where the drain at the end happens."""
    replay = Replay(flag, pcap, reader, recording, _progress_bar(pcap, progress))
    frames = iter(reader)
    if bulk_replay.available(reader, recording.program):
        # The first records by the reference loop, until one starts the sweep clock (a record
        # whose time the kernel cannot take is refused without starting it).
        more = True
        while more and replay.next_sweep is None:
            more = replay_each(replay, frames, limit=1)
        if more:
            bulk_replay.replay_in_bulk(replay, reader, frames)
    else:
        replay_each(replay, frames)
    if reader.problem is not None:
        # Like libpcap, reading stops at a damaged or cut-off record: say so, once.
        notices.say(f"cicd-audit: warning: {reader.problem}")
        replay.session.write_recorder_weird(replay.last_ns / 1e9 if replay.last_ns else time.time(),
                                            "cicd_audit_pcap_truncated", reader.problem)
    replay.finish_progress()
    return replay.last_ns


def _progress_bar(pcap: Path, progress: bool | None):
    if not pcap.is_file():
        return None                 # a pipe: no size to show progress against
    size = os.path.getsize(pcap)
    if progress is None:
        progress = sys.stderr.isatty() and size >= PROGRESS_MIN_BYTES
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=size, unit="B", unit_scale=True, desc=pcap.name, file=sys.stderr)


def _warn_if_offloaded(bad: int, packets: int, validate_checksums: bool) -> None:
    """Like Zeek, say so when most checksums are bad: the capture was probably
    taken on the sending host, before the NIC filled them in."""
    if validate_checksums and packets and bad * 2 > packets:
        notices.say(f"cicd-audit: warning: {bad} of {packets} packets had bad checksums and were dropped, as Zeek "
                    "does; the capture was probably taken with checksum offloading: rerun with -C to keep them")
