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

from cicd_audit.errors import InputError
from cicd_audit.recorder import linktypes
from cicd_audit.recorder.bpf_program import CaptureProgram, ProgramSettings, require_root
from cicd_audit.recorder.session import SessionLog
from cicd_audit.recorder.sweeper import Sweeper
from cicd_audit.recorder.test_run import FrameRejected, TestRunner

SWEEP_INTERVAL_NS = 1_000_000_000   # sweep timers once per second of packet time
PROGRESS_MIN_BYTES = 20_000_000     # a progress bar only for files worth waiting on


def _open_reader(path: Path):
    import logging
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)   # we report truncation ourselves
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader
    try:
        return RawPcapReader(str(path))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except (Scapy_Exception, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a pcap or pcapng file ({exc})") from exc


def _timestamp_ns(meta) -> int:
    if hasattr(meta, "tshigh"):                       # pcapng
        units = (meta.tshigh << 32) | meta.tslow
        resolution = getattr(meta, "tsresol", 1_000_000) or 1_000_000
        return units * 1_000_000_000 // resolution
    frac = meta.usec
    nano = getattr(meta, "nano", False)
    return meta.sec * 1_000_000_000 + (frac if nano else frac * 1000)


def _linktype(reader, meta) -> int:
    return getattr(meta, "linktype", None) or getattr(reader, "linktype", 1)


def record_pcap(pcap: Path, out_dir: Path, fmt: str = "tsv", validate_checksums: bool = True,
                progress: bool | None = None, settings: ProgramSettings | None = None,
                likely_server_ports: frozenset | None = None, community_id: bool = False) -> dict:
    """Write Zeek logs for a capture file into out_dir; returns the capture stats.

    likely_server_ports: Zeek's likely_server_ports as (port, "tcp"|"udp")
    pairs (zeek_defaults.parse_likely_server_ports), when Zeek's default set
    is not the one wanted (e.g. to match `zeek -b`). community_id: add Zeek's
    community_id column to conn.log.
    """
    pcap = Path(pcap)
    require_root()                  # before any log file exists
    reader = _open_reader(pcap)
    started = time.monotonic()
    session = SessionLog(out_dir, fmt, to_epoch=lambda ns: ns / 1e9, add_community_id=community_id)
    settings = settings or ProgramSettings(pcap_mode=True, validate_checksums=validate_checksums)
    try:
        program = CaptureProgram(settings, session.on_event)
    except BaseException:
        session.abort("the BPF program could not be loaded")
        reader.close()
        raise
    try:
        if likely_server_ports is not None:
            program.set_likely_server_ports(likely_server_ports)
        runner = TestRunner(program.packet_fn.fd)
        sweeper = Sweeper(program, program.sweep_fn.fd)
        bar = _progress_bar(pcap, progress)
        next_sweep = None
        last_ns = 0
        packets = 0
        try:
            for record_number, (frame, meta) in enumerate(reader, start=1):
                ts_ns = _timestamp_ns(meta)
                if next_sweep is None:
                    next_sweep = ts_ns + SWEEP_INTERVAL_NS
                elif ts_ns >= next_sweep:
                    sweeper.sweep(ts_ns)
                    next_sweep = ts_ns + SWEEP_INTERVAL_NS
                last_ns = max(last_ns, ts_ns)
                caplen = getattr(meta, "caplen", len(frame))
                if len(frame) < caplen:
                    # scapy hands over a record cut off by the end of the file quietly: say so.
                    message = f"{pcap}: file ends inside packet record {record_number} ({len(frame)} of {caplen} bytes)"
                    print(f"cicd-audit: warning: {message}", file=sys.stderr)
                    session.write_weird(ts_ns / 1e9, "cicd_audit_pcap_truncated", message)
                try:
                    ether = linktypes.to_ethernet(_linktype(reader, meta), bytes(frame))
                except linktypes.UnsupportedLinkType as exc:
                    raise InputError(f"{pcap}: {exc}") from exc
                if ether is None or len(ether) < 14:
                    continue        # nothing IP in it (e.g. a loopback frame of another family)
                try:
                    # The mark carries the frame's captured length: a frame longer than a
                    # test-run skb is cut, but Zeek saw all of it (gaps, ICMP counts).
                    runner.run(ether, ts_ns, mark=len(ether))
                except FrameRejected as exc:
                    session.count_unparsable()
                    session.write_weird(ts_ns / 1e9, "cicd_audit_frame_rejected", f"packet record {record_number}: {exc}")
                    continue
                program.poll()
                packets += 1
                if bar is not None and packets % 1000 == 0:
                    bar.update(reader.f.tell() - bar.n)
        except EOFError:
            pass
        except Exception as exc:  # scapy raises bare errors on truncated files
            if isinstance(exc, InputError):
                raise
            session.write_weird(last_ns / 1e9 if last_ns else time.time(), "cicd_audit_pcap_read_error", str(exc))
        _warn_if_cut_in_header(reader, pcap, session, last_ns)
        sweeper.sweep(last_ns, drain=True)
        program.poll()
        if bar is not None:
            bar.update(bar.total - bar.n)
            bar.close()
        kernel_stats = program.stats()
        stats = session.close(kernel_stats, str(pcap), time.monotonic() - started)
        _warn_if_offloaded(kernel_stats.get("bad_checksums", 0), stats["packets"], validate_checksums)
        return stats
    finally:
        if not session.closed:
            session.abort("the capture file could not be processed to the end")
        reader.close()
        program.close()




def _progress_bar(pcap: Path, progress: bool | None):
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
        print(f"cicd-audit: warning: {bad} of {packets} packets had bad checksums and were dropped, as Zeek "
              "does; the capture was probably taken with checksum offloading: rerun with -C to keep them",
              file=sys.stderr)


def _warn_if_cut_in_header(reader, pcap: Path, session: SessionLog, last_ns: int) -> None:
    """scapy stops quietly when the file ends inside a record header (classic pcap): say so."""
    if not hasattr(reader, "endian") or hasattr(reader, "blocktypes"):
        return                      # pcapng: its reader raises on a cut block
    size = os.path.getsize(pcap)
    cut_record = _record_cut_in_header(pcap, size)
    if cut_record:
        message = f"{pcap}: file ends inside the header of packet record {cut_record}"
        print(f"cicd-audit: warning: {message}", file=sys.stderr)
        session.write_weird(last_ns / 1e9 if last_ns else time.time(), "cicd_audit_pcap_truncated", message)


def _record_cut_in_header(pcap: Path, size: int) -> int:
    """Walk the record headers of a classic pcap: the number of the record whose
    header runs past the end of the file, or 0."""
    import struct
    with open(pcap, "rb") as f:
        magic = f.read(4)
        endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        offset, number = 24, 1
        while offset < size:
            if size - offset < 16:
                return number
            f.seek(offset + 8)
            caplen = struct.unpack(endian + "I", f.read(4))[0]
            offset += 16 + caplen
            number += 1
    return 0
