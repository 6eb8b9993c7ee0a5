"""A recording session's logs: kernel events in, Zeek logs out.

Receives decoded ring-buffer events, keeps per-connection DNS state, and
writes conn.log, dns.log, weird.log and capture_stats.log in the output
directory. Everything it counts (events it could not decode, DNS messages
it could not parse) is written to the logs at the end, never dropped silently.

Every log, capture_stats.log included, is created when the session starts,
through recorder/logs/output_dir.py (no links followed, no file reused), and never
reopened by name. A log the disk refuses (full, quota, I/O error) keeps its
complete rows; the failure is said once on stderr, the rows it could not take
are counted (capture_stats.log's rows_lost; recorder.status per log), and
`failures` names each. Disk space for #close, the stats row and the status
is allocated at start, so a job that fills the disk cannot take it.
Events the kernel could not hand over (ring buffer full) and connections it
could not track (table full) make the recording incomplete too, and say so.

Live recording may add process attribution (a ProcessTable: conn.log gets the
proc.* columns of zeek_schemas/conn_process.tsv) and blocking mode (conn.log
gets ``blocked``; every refused attempt becomes a notice.log row). Without
them the output is exactly what it was before either existed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cicd_audit import notices
from cicd_audit.errors import UsageError
from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.logs import events
from cicd_audit.recorder.logs.capture_stats import capture_stats_row
from cicd_audit.recorder.logs.conn_rows import (
    community_id,
    conn_end_head,
    conn_row,
    is_blocked,
    process_columns,
    refused_connect_row,
    with_limit_reached,
)
from cicd_audit.recorder.logs.dns.log import NO_OUTPUT, DnsConnectionLog, DnsOutput
from cicd_audit.recorder.logs.dns.plain_pair import PlainPair
from cicd_audit.recorder.logs.dns.wire import ParseOptions
from cicd_audit.recorder.logs.fragments import Datagram, FragmentTable
from cicd_audit.recorder.logs.notice_rows import AnswerNames, notice_row
from cicd_audit.recorder.logs.output_dir import OutputDir
from cicd_audit.recorder.logs.processes import ProcessInfo, ProcessTable
from cicd_audit.recorder.logs.status_file import STATUS_FILE, StatusFile
from cicd_audit.recorder.logs.tunnels import TunnelLog
from cicd_audit.recorder.logs.uid import UidAllocator
from cicd_audit.recorder.logs.weird_policy import WeirdPolicy
from cicd_audit.recorder.logs.weirds import kernel_weird
from cicd_audit.zeeklog.schema import load_schema
from cicd_audit.zeeklog.writer import LogWriter


@dataclass
class SessionCounters:
    connections: int = 0
    dns_messages: int = 0
    dns_rows: int = 0
    dns_parse_errors: int = 0
    weirds: int = 0
    bad_events: int = 0
    conn_packets: int = 0       # the kernel counts packets in their connection: summed here
    conn_ip_bytes: int = 0
    notices: int = 0
    refused_connects: int = 0   # conn.log rows written for a connect() refused before any packet
    datagrams_run: int = 0      # reassembled datagrams run through the kernel program: counted once
    datagram_ip_bytes: int = 0  # already, as their fragments
    non_ip_frames: int = 0      # capture frames whose link layer held no IP (the kernel counts its own)
    end_reasons: dict = field(default_factory=dict)


# Disk space allocated past each log's header at start (LogWriter's reserve): capture_stats.log's
# row and #close fit when the job has filled the disk; the other logs keep room for #close only.
STATS_RESERVE = 4096
CLOSE_RESERVE = 64

# capture_stats.log's end-reason counts, by the kernel's enum ca_end_reason value.
_END_REASONS = {reason.value: reason.name.lower() for reason in abi.EndReason}


@dataclass(frozen=True)
class Rotation:
    """When a log of a long recording is rotated, as Zeek rotates its logs: after `seconds`
    since it was opened, or once it holds `size` bytes (checked at each flush, about every
    second). The rotated file is <log>.<open time>.log beside the current one; readers
    (zeeklog.reader, zeek-cut on a glob, log shippers) read them all."""

    seconds: float | None = None
    size: int | None = None

    def due(self, writer: LogWriter, now: float) -> bool:
        return ((self.seconds is not None and now - writer.opened >= self.seconds)
                or (self.size is not None and writer.size >= self.size))


class SessionLog:
    # A UDP connection's plain lookups are logged without building its DNS analyzer
    # (dns/plain_pair.py); tests turn it off to compare.
    plain_pairs = True

    def __init__(self, out_dir: Path | OutputDir, fmt: str, to_epoch: Callable[[int], float], peer: str = "cicd-audit",
                 add_community_id: bool = False, processes: ProcessTable | None = None, blocking: bool = False,
                 rotation: Rotation | None = None, dns_options: ParseOptions | None = None):
        self._owns_output = not isinstance(out_dir, OutputDir)      # else the caller closes it
        self.output = OutputDir(out_dir) if self._owns_output else out_dir
        self.out_dir = self.output.path
        self.failures: list[str] = []       # logs the disk refused, each with why
        self.fmt = fmt
        self.to_epoch = to_epoch
        self.peer = peer
        self.uids = UidAllocator()
        self.counters = SessionCounters()
        # Per connection: its DNS log, and the conn_id of its last message with the orientation it came in.
        self._dns_logs: dict[int, tuple[DnsConnectionLog | PlainPair, events.ConnId, int]] = {}
        # Per connection whose DNS parser reached a limit: where in its history Zeek's 'X' goes.
        self._limit_at: dict[int, int] = {}
        self.dns_options = dns_options or ParseOptions()     # Zeek's DNS settings (record --redef)
        self.fragments = FragmentTable()
        self.weird_policy = WeirdPolicy()
        self.tunnels = TunnelLog(self.uids.for_conn)
        # Set by the driver: runs a reassembled datagram through the kernel program; False if it could not.
        self.run_datagram: Callable[[Datagram], bool] | None = None
        conn_schema = load_schema("conn")
        # Zeek's policy/protocols/conn/community-id-logging.zeek: one more column after Zeek's own.
        self.add_community_id = add_community_id
        if add_community_id:
            conn_schema = conn_schema.extended(load_schema("conn_community_id"))
        self.processes = processes
        if processes is not None:
            conn_schema = conn_schema.extended(load_schema("conn_process"))
        self.blocking = blocking
        self.rotation = rotation
        self.rotated: list[str] = []        # the rotated files' names, oldest first
        if blocking:
            conn_schema = conn_schema.extended(load_schema("conn_blocked"))
        self._writers: list[LogWriter] = []
        self._starting = True           # a log refused now is no recording at all (see _refuse_start)
        try:
            self._conn = self._log(conn_schema)
            self._dns = self._log(load_schema("dns"))
            self._weird = self._log(load_schema("weird"))
            self._tunnel = self._log(load_schema("tunnel"))
            self._notice = None
            if blocking:
                notice_schema = load_schema("notice")
                if processes is not None:
                    notice_schema = notice_schema.extended(load_schema("notice_process"))
                self._notice = self._log(notice_schema)
            # Created now, written at the end: nothing is opened by name later.
            self._stats = LogWriter(self.out_dir, load_schema("capture_stats"), fmt, opener=self.output.create,
                                    on_failure=self._log_failed, reserve=STATS_RESERVE)
            self._status = StatusFile(self.output)
            if self.failures or self._status.no_room:
                self._refuse_start(self.failures[0] if self.failures else self._status.no_room)
        except BaseException:
            for writer in self._writers:
                writer.close()
            if self._owns_output:
                self.output.close()
            raise
        self._starting = False
        self._blocked_conns: set[int] = set()       # kernel conn ids with a blocked packet
        self._answer_names = AnswerNames()           # for notices: the names an address was looked up as
        self.last_ts: float | None = None
        self.closed = False

    def _log(self, schema) -> LogWriter:
        writer = LogWriter(self.out_dir, schema, self.fmt, opener=self.output.create, on_failure=self._log_failed,
                           reserve=CLOSE_RESERVE)
        self._writers.append(writer)
        return writer

    def _refuse_start(self, why: str) -> None:
        """The disk has no room for the logs' headers and the space they hold for their ends: then
        no log could be closed, nor the status written. No files are left, and the recording does
        not start (a job around which it would run is not run)."""
        self._status.close()
        for writer in self._writers + [self._stats]:
            writer.close()
        for name in [w.schema.path + ".log" for w in self._writers + [self._stats]] + [STATUS_FILE]:
            self.output.remove(name)
        raise UsageError(f"{self.out_dir}: no disk space for the logs ({why}); nothing was recorded")

    def _log_failed(self, writer: LogWriter) -> None:
        name = writer.schema.path + ".log"
        self.failures.append(f"{name}: {writer.failure}")
        if self._starting:
            return                      # said once, by _refuse_start
        notices.say(f"cicd-audit: error: cannot write {self.out_dir / name}: {writer.failure}; its complete rows are "
                    "kept, later ones are counted as lost")

    def record_failure(self, why: str) -> None:
        """The recording is incomplete for a reason of the caller's (recorder.status says so)."""
        self.failures.append(why)

    @property
    def rows_lost(self) -> int:
        return sum(w.lost_rows for w in self._writers) + self._stats.lost_rows

    def _rows_lost_by_log(self) -> dict:
        return {w.schema.path + ".log": w.lost_rows for w in self._writers + [self._stats] if w.lost_rows}

    def _say_kernel_losses(self, drops: int, table_full: int) -> None:
        """What the kernel could not hand over is lost as surely as a row the disk refused: said once, loudly."""
        lost = []
        if drops:
            lost.append(f"{drops} kernel events lost: the ring buffer was full (conn.log, dns.log or weird.log "
                        "rows are missing)")
        if table_full:
            lost.append(f"{table_full} connections not tracked: the connection table was full")
        for why in lost:
            self.failures.append(why)
            notices.say(f"cicd-audit: error: {why}")

    # -- events -----------------------------------------------------------------
    def on_event(self, data, size: int) -> None:
        try:
            event = events.decode(data, size)
        except events.EventFormatError as exc:
            self.on_bad_event(exc)
            return
        if type(event) is tuple:         # (DnsHead, payload): the most frequent, straight to its handler
            self._dns_message(*event)
        else:
            self.on_decoded(event)

    def on_bad_event(self, exc: events.EventFormatError) -> None:
        self.counters.bad_events += 1
        self.write_recorder_weird(self.last_ts or time.time(), "cicd_audit_bad_event", str(exc))

    def on_decoded(self, event) -> None:
        """One event as events.decode gives it (an agent decodes first to file it by job)."""
        if type(event) is tuple:         # (DnsEvent, payload): the most frequent, tested first
            self._dns_message(*event)
        elif isinstance(event, abi.ConnEndEvent):
            self._conn_end(event)
        elif isinstance(event, abi.WeirdEvent):
            self._kernel_weird(event)
        elif isinstance(event, abi.ProcessEvent):
            if self.processes is not None:
                self.processes.on_process_event(event.proc)
        elif isinstance(event, abi.BlockedEvent):
            self._blocked(event)
        elif isinstance(event, events.Fragment):
            self._fragment(event)
        elif isinstance(event, abi.TunnelEvent):
            row = self.tunnels.discovered(event, self.to_epoch(event.hdr.ts_ns))
            if row is not None:
                self._tunnel.write(row)
        else:
            raise TypeError(f"not an event from events.decode: {type(event).__name__}")

    def _conn_end(self, ev: abi.ConnEndEvent) -> None:
        # One call for every field read here: each access to a ctypes member builds an object.
        cid, key, orig_slot, flags, ts_ns, first_parent, latest_parent, packets, ip_bytes, reason = \
            conn_end_head(ev)
        uid = self.uids.for_conn(cid)
        ts_end = self.to_epoch(ts_ns)
        dns = self._dns_logs.pop(cid, None)
        limit_at = self._limit_at.pop(cid, None)
        # The roles as the connection ends: most often those of its last DNS message.
        end_cid = dns[1] if dns is not None and dns[2] == orig_slot else events.conn_id(key, orig_slot)
        services = []
        if dns is not None:
            dns_log = dns[0]
            self._write_dns_output(dns_log.flush(end_cid, ts_end), dns_log.uid, end_cid)
            if dns_log.service:
                services.append(dns_log.service)
        parents = [self.uids.for_conn(pid) for pid in dict.fromkeys((first_parent, latest_parent)) if pid] \
            if first_parent or latest_parent else None
        if not parents:
            # A tunnelled packet is counted once, in its outermost connection or IP tunnel.
            self.counters.conn_packets += packets
            self.counters.conn_ip_bytes += ip_bytes
        if flags & abi.CONN_TUNNEL:
            closed = self.tunnels.closed(cid, ts_end)
            if closed is not None:
                self._tunnel.write(closed)
        self.uids.forget(cid, tunnel=bool(flags & abi.CONN_TUNNEL))
        if flags & abi.CONN_IP_TUNNEL:
            return     # Zeek logs an IP tunnel (GRE, IP-in-IP) in tunnel.log, not as a connection
        row = conn_row(ev, uid, self.to_epoch, services, parents, end_cid)
        if limit_at is not None:
            row["history"] = with_limit_reached(row["history"], limit_at)
        # ev.conn.proc builds ctypes objects: only for a process table (a live recording).
        self._add_columns(row, self._describe(ev.conn.proc) if self.processes is not None else None)
        if self.blocking:
            row["blocked"] = is_blocked(ev.conn) or cid in self._blocked_conns
            self._blocked_conns.discard(cid)
        self._conn.write(row)
        self.counters.connections += 1
        reason = _END_REASONS.get(reason, "unknown")
        self.counters.end_reasons[reason] = self.counters.end_reasons.get(reason, 0) + 1

    def _add_columns(self, row: dict, info: ProcessInfo | None) -> None:
        """The optional columns after Zeek's, in schema order: community_id, then proc.*."""
        if self.add_community_id:
            row["community_id"] = community_id(row["id.orig_h"], row["id.orig_p"], row["id.resp_h"],
                                               row["id.resp_p"], row["ip_proto"])
        if self.processes is not None:
            row.update(process_columns(info))

    def _describe(self, proc: abi.Process) -> ProcessInfo | None:
        return self.processes.describe(proc) if self.processes is not None else None

    def _dns_message(self, ev: events.DnsHead, payload: bytes) -> None:
        ts = self.to_epoch(ev.ts_ns)
        self.last_ts = ts
        # The kernel's orientation for this event: it has already flipped the roles for a reply sent by the
        # originator (ca_dns_message), so DnsOutput.flipped needs nothing here; the next event says the roles.
        dns = self._dns_logs.get(ev.conn_id)
        self.counters.dns_messages += 1
        if dns is None:
            cid = events.conn_id(ev.key, ev.orig_slot)
            uid = self.uids.for_conn(ev.conn_id)
            if cid.ip_proto == 17 and self.plain_pairs:
                pair = PlainPair.start(uid, cid, ts, bool(ev.from_orig), payload, self.dns_options)
                if pair is not None:        # a lookup's query: nothing to write until its reply
                    self._dns_logs[ev.conn_id] = (pair, cid, ev.orig_slot)
                    return
            dns_log = DnsConnectionLog(uid, cid, "tcp" if cid.ip_proto == 6 else "udp", options=self.dns_options)
            self._dns_logs[ev.conn_id] = (dns_log, cid, ev.orig_slot)
        elif dns[2] == ev.orig_slot:        # same connection, same roles: the same conn_id
            dns_log, cid = dns[0], dns[1]
            if type(dns_log) is PlainPair:
                out = dns_log.message(cid, ts, bool(ev.from_orig), payload)
                if out is not None:         # a lookup's reply (its row), or the next lookup's query
                    self._write_dns_output(out, dns_log.uid, cid)
                    return
                dns_log = dns_log.handover()
                self._dns_logs[ev.conn_id] = (dns_log, cid, ev.orig_slot)
        else:
            dns_log, cid = dns[0], events.conn_id(ev.key, ev.orig_slot)
            if type(dns_log) is PlainPair:
                dns_log = dns_log.handover()
            self._dns_logs[ev.conn_id] = (dns_log, cid, ev.orig_slot)
        limit_reached = dns_log.limit_reached
        if cid.ip_proto == 6:
            out = dns_log.tcp_segment(cid, ts, bool(ev.from_orig), ev.tcp_seq, payload)
        else:
            out = dns_log.message(cid, ts, bool(ev.from_orig), payload)
        if dns_log.limit_reached and not limit_reached:
            # The parser's limits are Zeek's DNS analyzer's (CheckHistory 'X'), after this packet's letters.
            self._limit_at[ev.conn_id] = ev.history_len
        self._write_dns_output(out, dns_log.uid, cid)

    def _write_dns_output(self, out: DnsOutput, uid: str, cid: events.ConnId) -> None:
        if out is NO_OUTPUT:
            return          # most calls: a query waiting for its reply, a connection ended with nothing pending
        for row in out.rows:
            self._dns.write(row)
        self.counters.dns_rows += len(out.rows)
        if self.blocking:
            for query, addresses in out.resolved:
                self._answer_names.remember(query, addresses)
        for ts, name, addl in out.weirds:
            self.counters.dns_parse_errors += 1
            self.write_weird(ts, name, addl, uid=uid, conn_id=cid, source="DNS")

    # -- blocking mode ------------------------------------------------------------
    def _blocked(self, ev: abi.BlockedEvent) -> None:
        ts = self.to_epoch(ev.hdr.ts_ns)
        self.last_ts = ts
        if self._notice is None:
            self.counters.bad_events += 1
            self.write_recorder_weird(ts, "cicd_audit_bad_event", "blocked-attempt event while not in blocking mode")
            return
        info = self._describe(ev.proc)
        if ev.conn_id:
            uid = self.uids.for_conn(ev.conn_id)
            self._blocked_conns.add(ev.conn_id)
        elif ev.where == abi.BlockWhere.CONNECT:
            uid = self._refused_connect(ev, ts, info)
        else:
            uid = None      # dropped at TC with no connection entry (e.g. the table was full)
        self._notice.write(notice_row(ev, ts, uid, info, self._answer_names, self.processes is not None))
        self.counters.notices += 1

    def _refused_connect(self, ev: abi.BlockedEvent, ts: float, info: ProcessInfo | None) -> str:
        """Write the conn.log row of a refused connect(); returns its new uid."""
        self.counters.refused_connects += 1
        # Kernel connection ids are never negative: this key gets a uid no kernel connection has.
        key = -self.counters.refused_connects
        uid = self.uids.for_conn(key)
        self.uids.forget(key)
        row = refused_connect_row(ev, uid, ts)
        self._add_columns(row, info)
        row["blocked"] = True
        self._conn.write(row)
        self.counters.connections += 1
        return uid

    def _fragment(self, frag: events.Fragment) -> None:
        datagram, weirds = self.fragments.add(frag)
        for weird in weirds:
            self.write_weird(self.to_epoch(weird.ts_ns), weird.name, conn_id=weird.conn_id, source=weird.source)
        if datagram is None:
            return
        if self.run_datagram is not None and self.run_datagram(datagram):
            self.counters.datagrams_run += 1
            self.counters.datagram_ip_bytes += datagram.ip_len
        else:
            self.fragments.counts.lost += datagram.fragments

    def _kernel_weird(self, ev: abi.WeirdEvent) -> None:
        ts = self.to_epoch(ev.hdr.ts_ns)
        # Zeek's conn_weird has the connection's id, oriented as the connection; its flow_weird the
        # packet's addresses, sender first, ports 0; a weird about no flow has neither.
        weird = kernel_weird(ev.code, ev.detail, ev.depth, ev.key.ip_proto, about_conn=bool(ev.conn_id))
        uid, cid = None, None
        if ev.conn_id:
            uid, cid = self.uids.for_conn(ev.conn_id), events.conn_id(ev.key, ev.orig_slot)
        elif weird.about_flow:
            cid = events.flow_id(ev.key, ev.orig_slot)
        self.write_weird(ts, weird.name, weird.addl, uid=uid, conn_id=cid, source=weird.source)

    def write_weird(self, ts, name, addl=None, uid=None, conn_id=None, source=None) -> None:
        """A weird about the traffic: counted, and logged as Zeek's Weird framework decides (weird_policy)."""
        self.counters.weirds += 1
        if self.weird_policy.logs(ts, name, uid, conn_id):
            self._write_weird_row(ts, name, addl, uid, conn_id, source)

    def write_recorder_weird(self, ts, name, addl=None) -> None:
        """A weird about the recorder itself (a bad event, an interrupted capture): every one is logged."""
        self.counters.weirds += 1
        self._write_weird_row(ts, name, addl, None, None, None)

    def _write_weird_row(self, ts, name, addl, uid, conn_id, source) -> None:
        self._weird.write({
            "ts": ts, "uid": uid,
            "id.orig_h": getattr(conn_id, "orig_h", None), "id.orig_p": getattr(conn_id, "orig_p", None),
            "id.resp_h": getattr(conn_id, "resp_h", None), "id.resp_p": getattr(conn_id, "resp_p", None),
            # Zeek's weird events set addl only when it is not empty.
            "name": name, "addl": addl or None, "notice": False, "peer": self.peer, "source": source,
        })

    def count_unparsable(self) -> None:
        """A packet that never reached the kernel program (user space could not hand it over)."""
        self.counters.bad_events += 1

    def flush(self) -> None:
        """Put every complete row on disk, so the logs can be read while recording; rotate the
        logs whose time or size is up."""
        now = time.monotonic()
        for writer in self._writers:
            writer.flush()
            if self.rotation is not None and self.rotation.due(writer, now):
                rotated = writer.rotate(self.output.rename_new, close_time=time.time())
                if rotated:
                    self.rotated.append(rotated)

    # -- end --------------------------------------------------------------------
    def abort(self, reason: str) -> None:
        """Recording failed part-way: say so in weird.log and still leave every log valid."""
        if self.closed:
            return
        self.failures.append(f"recording aborted: {reason}")
        self.write_recorder_weird(self.last_ts or time.time(), "cicd_audit_recording_aborted", reason)
        self.close({}, "aborted", 0.0)

    def close(self, kernel_stats: dict, source: str, duration: float, command_status: int | None = None) -> dict:
        """Flush what is pending, write capture_stats.log, close every log, and write recorder.status
        (whether the recording is complete, and the recorded command's exit status). Returns the stats row."""
        self.closed = True
        end_ts = self.last_ts or time.time()
        for dns_log, cid, _ in list(self._dns_logs.values()):
            self._write_dns_output(dns_log.flush(cid, end_ts), dns_log.uid, cid)
        self._dns_logs.clear()
        self.fragments.expire(0, everything=True)
        stats = capture_stats_row(kernel_stats, self.counters, self.fragments.counts.lost, source, duration)
        self._say_kernel_losses(stats["ringbuf_drops"], stats["conn_table_full"])
        for writer in self._writers:
            writer.close()
        stats["rows_lost"] = self.rows_lost
        self._stats.write(stats)
        self._stats.close()
        stats["rows_lost"] = self.rows_lost        # the stats row itself, if the disk refused it too
        self._write_status(stats, command_status)
        stats["incomplete"] = bool(self.failures)
        if self._owns_output:
            self.output.close()
        return stats


    def _write_status(self, stats: dict, command_status: int | None) -> None:
        """recorder.status: one JSON object a CI step can read to tell a recorder failure from the job's."""
        status = {"recording": "incomplete" if self.failures else "complete", "failures": self.failures,
                  "rows_lost": stats["rows_lost"], "rows_lost_by_log": self._rows_lost_by_log(),
                  "ringbuf_drops": stats["ringbuf_drops"], "conn_table_full": stats["conn_table_full"],
                  "command_status": command_status}
        problem = self._status.finish(status)
        if problem is not None:
            self.failures.append(problem)
            notices.say(f"cicd-audit: error: cannot write {self.out_dir / STATUS_FILE}: {problem}")
