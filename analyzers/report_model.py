"""The security report, computed once from the loaded logs and the findings; rendered elsewhere.

    report = build_report(result, logs, fail_on="high")
    report.verdict      # passed?, against which --fail-on, how many findings fail it, attempts blocked
    report.metrics      # the key numbers (attempts, blocked vs allowed, destinations, exfiltration, ...)
    report.findings     # FindingView: severity, analyzer, indicator, summary, evidence, processes, steps
    report.domains      # DomainGroup per registered domain: every destination the job contacted
    report.timeline     # Timeline: the job's network activity per process, in time buckets

Plain frozen dataclasses, no rendering and no escaping: strings from the logs
are kept as they are, and each renderer (``report.py``, ``report_html.py``)
neutralizes them for its output (``safe_text``). ``as_dict`` gives the JSON
form. ``result`` is an ``analysis.AnalysisResult``; ``logs`` the ``LoadedLogs``
it came from (conn.log's ``blocked`` and ``proc.*`` columns, notice.log's
refused lookups). Without ``logs`` the report lacks what only conn.log holds:
who connected, what was blocked, the timeline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .dnsindex import canon_ip, session_labels
from .findings import SEVERITY_RANK, at_or_above

# ---- what the key metrics count (analyzer names, see findings.ANALYZERS) -----

#: Data leaving the job by a side channel or in bulk: each finding is a potential exfiltration attempt.
EXFILTRATION_ANALYZERS = ("dns_tunnel", "secret_in_query", "dns_callback", "upload_volume", "icmp_payload")
#: Traffic to something the policy (or no DNS answer) does not explain, or DNS hidden from dns.log.
UNAUTHORIZED_ANALYZERS = ("unexpected_destination", "direct_ip", "unexpected_lookup", "encrypted_dns")
#: Destinations on the list of known exfiltration and out-of-band services (OAST, paste, webhook, tunnel).
KNOWN_MALICIOUS_ANALYZERS = ("known_service",)
#: Coming back at regular intervals.
PERSISTENCE_ANALYZERS = ("beaconing",)

#: Blocked attempts to one destination that make it "repeated": one refusal is a
#: program finding out; three or more is one that keeps trying (retry loops
#: stop at two or three for an ordinary error).
REPEATED_BLOCKED_ATTEMPTS = 3

#: Time buckets of the per-process timeline: fine enough to see bursts in a
#: one-hour job (30 s each), few enough to keep the HTML page small.
TIMELINE_BUCKETS = 120

#: Processes shown in the timeline, most connections first; the rest are summed in one row.
MAX_TIMELINE_PROCESSES = 25

NOTE_BLOCKED_DNS = "CicdAudit::Blocked_DNS_Query"  # recorder/logs/notice_rows.py writes it; read here as data
UNKNOWN_PROCESS = "(process not recorded)"
DIRECT_TO_IP = "(no DNS name: direct to IP)"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    fail_on: str | None          # the --fail-on severity; None: the run never fails on findings
    failing_findings: int        # findings at or above fail_on
    blocked_attempts: int        # connections and lookups blocking mode refused


@dataclass(frozen=True)
class Metrics:
    connection_attempts: int     # connections to destinations (the lookups themselves and host/link traffic left out)
    allowed_attempts: int
    blocked_attempts: int        # of those, refused or dropped by blocking mode
    blocked_lookups: int         # DNS queries refused for their name (notice.log)
    unique_destinations: int     # distinct addresses
    exfiltration_attempts: int
    unauthorized_access: int
    repeated_attempts: int       # beaconing findings plus destinations blocked REPEATED_BLOCKED_ATTEMPTS times or more
    known_malicious: int
    dns_queries: int
    bytes_sent: int
    bytes_received: int

    @property
    def blocked_share(self) -> float | None:
        """Blocked connection attempts over all of them (None when there were none)."""
        return self.blocked_attempts / self.connection_attempts if self.connection_attempts else None


@dataclass(frozen=True)
class FindingView:
    severity: str
    analyzer: str
    indicator: str
    summary: str
    evidence: dict
    sessions: tuple[str, ...]
    processes: tuple[str, ...]   # "name (pid N)", most bytes sent first
    steps: tuple[str, ...]       # CI steps those processes ran in


@dataclass(frozen=True)
class Destination:
    session: str
    address: str
    port: int | None
    proto: str
    names: tuple[str, ...]
    processes: tuple[str, ...]
    connections: int
    blocked: int                 # connections blocking mode refused or dropped
    bytes_sent: int
    bytes_received: int
    allowed: bool | None         # by the policy; None without one

    @property
    def status(self) -> str:
        if self.blocked and self.blocked == self.connections:
            return "blocked"
        if self.blocked:
            return "partly blocked"
        if self.allowed is None:
            return "no policy"
        return "allowed" if self.allowed else "outside policy"


@dataclass(frozen=True)
class DomainGroup:
    domain: str                  # registered domain, or DIRECT_TO_IP
    destinations: tuple[Destination, ...]

    @property
    def connections(self) -> int:
        return sum(d.connections for d in self.destinations)

    @property
    def blocked(self) -> int:
        return sum(d.blocked for d in self.destinations)

    @property
    def bytes_sent(self) -> int:
        return sum(d.bytes_sent for d in self.destinations)

    @property
    def bytes_received(self) -> int:
        return sum(d.bytes_received for d in self.destinations)

    @property
    def processes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for d in self.destinations for p in d.processes))


@dataclass(frozen=True)
class ProcessActivity:
    process: str                 # "name (pid N)", or UNKNOWN_PROCESS
    step: str | None
    connections: int
    blocked: int
    bytes_sent: int
    counts: tuple[int, ...]      # connections per timeline bucket
    blocked_counts: tuple[int, ...]


@dataclass(frozen=True)
class Timeline:
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    bucket_seconds: float
    rows: tuple[ProcessActivity, ...]


@dataclass(frozen=True)
class Report:
    sessions: tuple[str, ...]
    first_seen: pd.Timestamp | None
    last_seen: pd.Timestamp | None
    policy: str | None
    baseline_sessions: int
    verdict: Verdict
    metrics: Metrics
    findings: tuple[FindingView, ...]
    domains: tuple[DomainGroup, ...]
    timeline: Timeline
    findings_by_severity: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)   # AnalysisResult.summary, for the renderers' header lines

    @property
    def multi_session(self) -> bool:
        return len(self.sessions) > 1

    def shown_findings(self, min_severity: str) -> tuple[FindingView, ...]:
        rank = SEVERITY_RANK[min_severity]
        return tuple(f for f in self.findings if SEVERITY_RANK[f.severity] >= rank)


# ---- building it -------------------------------------------------------------


def _process_label(name, pid) -> str:
    if pid is None or pid != pid:
        return UNKNOWN_PROCESS
    return f"{name or '?'} (pid {int(pid)})"


def _conn_rows(conn: pd.DataFrame | None) -> pd.DataFrame:
    """One row per conn.log row: the destination key, bytes, blocked, process, step, time."""
    cols = ["session", "address", "port", "proto", "orig_bytes", "resp_bytes", "blocked", "process", "step", "ts"]
    if conn is None or conn.empty or "id.resp_h" not in conn.columns:
        return pd.DataFrame(columns=cols)
    n = len(conn)
    raw = conn["id.resp_h"].to_numpy(dtype=object, na_value=None)
    codes, uniq = pd.factorize(pd.Series(raw, dtype=object))
    canon = np.array([canon_ip(a) or a for a in uniq], dtype=object)
    address = np.where(codes >= 0, canon[np.maximum(codes, 0)] if len(canon) else None, None)

    def col(name, dtype, na):
        return conn[name].to_numpy(dtype=dtype, na_value=na) if name in conn.columns else np.full(n, na, dtype=dtype)

    pid = col("proc.pid", "float64", np.nan)
    pname = col("proc.name", object, None)
    labels = [_process_label(a, b) for a, b in zip(pname.tolist(), pid.tolist())]
    return pd.DataFrame({
        "session": session_labels(conn),
        "address": address,
        "port": col("id.resp_p", "float64", np.nan),
        "proto": col("proto", object, ""),
        "orig_bytes": col("orig_bytes", "float64", 0.0),
        "resp_bytes": col("resp_bytes", "float64", 0.0),
        "blocked": col("blocked", bool, False) if "blocked" in conn.columns else np.zeros(n, dtype=bool),
        "process": labels,
        "step": col("proc.step", object, None),
        "ts": conn["ts"].array if "ts" in conn.columns else pd.array(np.full(n, np.datetime64("NaT", "ns"))),
    })


def _is_destination(rows: pd.DataFrame, ext: pd.DataFrame) -> np.ndarray:
    """Rows whose (session, address, port, proto) is one of the external destinations ``ext``."""
    if rows.empty or ext.empty:
        return np.zeros(len(rows), dtype=bool)
    keys = set(zip(ext["session"].astype(str).tolist(), ext["address"].tolist(),
                   ext["port"].astype("float64").fillna(-1).tolist(), ext["proto"].tolist()))
    # plain lists: iterating pandas' (possibly Arrow-backed) columns element by element is slow
    return np.array([k in keys for k in zip(rows["session"].tolist(), rows["address"].tolist(),
                                            rows["port"].fillna(-1).tolist(), rows["proto"].tolist())], dtype=bool)


def _per_destination(rows: pd.DataFrame) -> dict:
    """(session, address, port or -1, proto) -> [blocked connections, {process: None} in order of appearance]."""
    acc: dict = {}
    ports = rows["port"].fillna(-1).to_numpy(dtype="float64")
    for key_s, key_a, key_p, key_pr, blocked, proc in zip(rows["session"].tolist(), rows["address"].tolist(), ports.tolist(),
                                                          rows["proto"].tolist(), rows["blocked"].tolist(), rows["process"].tolist()):
        entry = acc.get((key_s, key_a, key_p, key_pr))
        if entry is None:
            entry = acc[(key_s, key_a, key_p, key_pr)] = [0, {}]
        entry[0] += bool(blocked)
        if proc != UNKNOWN_PROCESS:
            entry[1][proc] = None
    return acc


def _destinations(rows: pd.DataFrame, ext: pd.DataFrame) -> list[Destination]:
    if ext.empty:
        return []
    by_key = _per_destination(rows) if not rows.empty else {}
    out = []
    for r in ext.itertuples(index=False):
        port = None if pd.isna(r.port) else int(r.port)
        nblocked, procs = by_key.get((str(r.session), r.address, float(-1 if port is None else port), r.proto), (0, {}))
        allowed = None if r.allowed is None or r.allowed is pd.NA else bool(r.allowed)
        out.append(Destination(
            session=str(r.session), address=str(r.address), port=port, proto=str(r.proto), names=tuple(r.names),
            processes=tuple(procs), connections=int(r.connections), blocked=int(nblocked), bytes_sent=int(r.orig_bytes),
            bytes_received=int(r.resp_bytes), allowed=allowed,
        ))
    return out


def _group_by_domain(dests: list[Destination], regs: dict) -> tuple[DomainGroup, ...]:
    groups: dict[str, list[Destination]] = {}
    for d in dests:
        groups.setdefault(regs.get((d.session, d.address)) or DIRECT_TO_IP, []).append(d)
    out = [DomainGroup(k, tuple(sorted(v, key=lambda d: (-d.bytes_sent, d.address, d.port or 0)))) for k, v in groups.items()]
    # what blocking refused first (a reader's first question), then most data sent: where an upload shows
    return tuple(sorted(out, key=lambda g: (-(g.blocked > 0), -g.bytes_sent, g.domain)))


def _timeline(rows: pd.DataFrame) -> Timeline:
    ts = pd.to_datetime(rows["ts"] if not rows.empty else pd.Series([], dtype="datetime64[ns, UTC]"), utc=True)
    if ts.isna().all():
        return Timeline(None, None, 0.0, ())
    start, end = ts.min(), ts.max()
    bucket_s = max((end - start).total_seconds(), 1e-9) / TIMELINE_BUCKETS
    pos = ((ts - start).dt.total_seconds() / bucket_s).fillna(0).astype(int).clip(0, TIMELINE_BUCKETS - 1).to_numpy()
    codes, procs = pd.factorize(rows["process"])
    sizes = np.bincount(codes, minlength=len(procs))
    order = np.argsort(-sizes, kind="stable")
    if len(procs) > MAX_TIMELINE_PROCESSES:  # the quiet processes share one row
        rest = order[MAX_TIMELINE_PROCESSES - 1:]
        codes = np.where(np.isin(codes, rest), len(procs), codes)
        procs = [*procs, f"{len(rest)} other processes"]
        order = [*order[:MAX_TIMELINE_PROCESSES - 1], len(procs) - 1]
    n = len(procs)
    cell = codes * TIMELINE_BUCKETS + pos
    blocked = rows["blocked"].to_numpy(dtype=bool)
    counts = np.bincount(cell, minlength=n * TIMELINE_BUCKETS).reshape(n, TIMELINE_BUCKETS)
    bcounts = np.bincount(cell[blocked], minlength=n * TIMELINE_BUCKETS).reshape(n, TIMELINE_BUCKETS)
    sent = np.bincount(codes, weights=rows["orig_bytes"].to_numpy(dtype="float64"), minlength=n)
    steps: dict = {}
    for c, st in zip(codes.tolist(), rows["step"].tolist()):
        if isinstance(st, str) and st:      # a missing step can come as NaN (a float), which is truthy
            steps.setdefault(c, {})[st] = None
    out = []
    for c in order:
        st = list(steps.get(c, ()))
        out.append(ProcessActivity(
            process=str(procs[c]), step=", ".join(st[:3]) + (" ..." if len(st) > 3 else "") if st else None,
            connections=int(counts[c].sum()), blocked=int(bcounts[c].sum()), bytes_sent=int(sent[c]),
            counts=tuple(counts[c].tolist()), blocked_counts=tuple(bcounts[c].tolist()),
        ))
    return Timeline(start, end, bucket_s, tuple(out))


def _finding_views(findings: pd.DataFrame) -> tuple[FindingView, ...]:
    out = []
    for r in findings.itertuples(index=False):
        ev = r.evidence if isinstance(r.evidence, dict) else {}
        procs = ev.get("processes") or []
        out.append(FindingView(
            severity=str(r.severity), analyzer=str(r.analyzer), indicator=str(r.indicator), summary=str(r.summary),
            evidence=ev, sessions=tuple(r.sessions) if isinstance(r.sessions, (list, tuple)) else (),
            processes=tuple(_process_label(p.get("name") or p.get("exe"), p.get("pid")) for p in procs),
            steps=tuple(dict.fromkeys(p["step"] for p in procs if p.get("step"))),
        ))
    return tuple(out)


def _blocked_lookups(notice: pd.DataFrame | None) -> int:
    if notice is None or notice.empty or "note" not in notice.columns:
        return 0
    return int((notice["note"].astype(str) == NOTE_BLOCKED_DNS).sum())


def _count(findings: pd.DataFrame, analyzers) -> int:
    return int(findings["analyzer"].isin(analyzers).sum()) if not findings.empty else 0


def build_report(result, logs=None, fail_on: str | None = None) -> Report:
    """The report of one analysis: ``result`` from ``analysis.analyze(logs, ...)``."""
    conn = getattr(logs, "conn", None) if logs is not None else None
    notice = getattr(logs, "notice", None) if logs is not None else None
    rows = _conn_rows(conn)
    dest = result.destinations
    ext = dest[~dest["resolver"] & ~dest["local"]] if not dest.empty else dest   # the job's external destinations
    dest_rows = rows[_is_destination(rows, ext)]
    regs = {}
    if not dest.empty:
        for s, a, rd in zip(dest["session"].astype(str), dest["address"], dest["registered_domains"]):
            if rd:
                regs.setdefault((s, a), rd[0])
    dests = _destinations(dest_rows, ext)
    domains = _group_by_domain(dests, regs)

    findings = result.findings
    blocked_conns = int(dest_rows["blocked"].sum()) if not dest_rows.empty else 0
    blocked_lookups = _blocked_lookups(notice)
    repeated = sum(1 for d in dests if d.blocked >= REPEATED_BLOCKED_ATTEMPTS) + _count(findings, PERSISTENCE_ANALYZERS)
    attempts = sum(d.connections for d in dests)
    metrics = Metrics(
        connection_attempts=attempts, allowed_attempts=attempts - blocked_conns, blocked_attempts=blocked_conns,
        blocked_lookups=blocked_lookups, unique_destinations=len({d.address for d in dests}),
        exfiltration_attempts=_count(findings, EXFILTRATION_ANALYZERS),
        unauthorized_access=_count(findings, UNAUTHORIZED_ANALYZERS), repeated_attempts=repeated,
        known_malicious=_count(findings, KNOWN_MALICIOUS_ANALYZERS), dns_queries=int(result.summary.get("dns_queries", 0)),
        bytes_sent=sum(d.bytes_sent for d in dests), bytes_received=sum(d.bytes_received for d in dests),
    )
    failing = len(at_or_above(findings, fail_on)) if fail_on else 0
    verdict = Verdict(passed=failing == 0, fail_on=fail_on, failing_findings=failing,
                      blocked_attempts=blocked_conns + blocked_lookups)
    s = result.summary
    return Report(
        sessions=tuple(s.get("sessions") or ()),
        first_seen=pd.Timestamp(s["first_seen"]) if s.get("first_seen") else None,
        last_seen=pd.Timestamp(s["last_seen"]) if s.get("last_seen") else None,
        policy=s.get("policy"), baseline_sessions=int(s.get("baseline_sessions") or 0),
        verdict=verdict, metrics=metrics, findings=_finding_views(findings), domains=domains,
        timeline=_timeline(rows), findings_by_severity=dict(s.get("findings_by_severity") or {}), summary=dict(s),
    )


def as_dict(report: Report) -> dict:
    """The report as JSON-ready data (the ``report`` object of ``analyze --format json``)."""
    m = report.metrics
    return {
        "verdict": dataclasses.asdict(report.verdict),
        "metrics": {**dataclasses.asdict(m), "blocked_share": m.blocked_share},
        "domains": [
            {"domain": g.domain, "connections": g.connections, "blocked": g.blocked, "bytes_sent": g.bytes_sent,
             "bytes_received": g.bytes_received,
             "destinations": [{**dataclasses.asdict(d), "status": d.status} for d in g.destinations]}
            for g in report.domains
        ],
        "timeline": {
            "start": report.timeline.start.isoformat() if report.timeline.start is not None else None,
            "end": report.timeline.end.isoformat() if report.timeline.end is not None else None,
            "bucket_seconds": report.timeline.bucket_seconds,
            "processes": [dataclasses.asdict(p) for p in report.timeline.rows],
        },
    }
