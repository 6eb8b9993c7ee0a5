"""Run every analyzer over loaded logs and summarise: the library behind ``cicd-audit analyze``.

    result = analyze(load_logs("session/"), policy=load_policy("policy.yml"),
                     baseline=load_logs("run1/", "run2/"))
    result.findings   # DataFrame, findings.FINDING_COLUMNS, most severe first
    result.summary    # dict, the numbers of the report's header
    result.tunnel     # dns_tunnel.TunnelFeatures (per-name and per-domain features)
    result.destinations, result.lookups   # tables behind the destination findings
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from . import beacons, callbacks, dns_tunnel, encrypted_dns, icmp_payload, secret_names, services, uploads
from . import destinations as _dest
from .dnsindex import DnsIndex, build_index
from .findings import SEVERITIES, concat_findings
from .jobs import attach_jobs
from .processes import attach_processes, proc_uid_index


@dataclass
class AnalysisResult:
    findings: pd.DataFrame
    summary: dict
    tunnel: dns_tunnel.TunnelFeatures
    destinations: pd.DataFrame
    lookups: pd.DataFrame
    notes: list = field(default_factory=list)


@dataclass(frozen=True)
class Baseline:
    """Earlier runs of the same job as the analyzers compare a run with them: their destination
    and lookup tables (``destinations.baseline_tables``) and how many runs they are.

    ``analyze(baseline=...)`` takes logs (made into this) or this, made once: a fleet of runs
    each compared with its last N makes each run's tables once, not N times.
    """

    destinations: pd.DataFrame
    lookups: pd.DataFrame
    runs: int

    @classmethod
    def of_logs(cls, logs) -> Baseline:
        conn = _frame(logs, "conn")
        index = dns_index(logs)  # built once: the tables and the run count both read it
        dest, lookups = _dest.baseline_tables(conn, None, index=index)
        return cls(dest, lookups, len(_session_names(conn, index, None)) or 1)

    @classmethod
    def of_result(cls, result: AnalysisResult, session: str) -> Baseline:
        """The run just analyzed as one run of a later run's baseline: ``of_logs`` of its logs with
        a ``session`` column of ``session``, made from the tables its analysis already built
        (the same tables but for the policy, which a baseline does not apply, and the session)."""
        def labelled(table: pd.DataFrame) -> pd.DataFrame:
            return table.assign(session=pd.Series([session] * len(table), index=table.index, dtype=table["session"].dtype))

        return cls(labelled(_dest.without_policy(result.destinations)), labelled(result.lookups), 1)

    @classmethod
    def joined(cls, parts: list[Baseline]) -> Baseline:
        """Several baselines as one, as if their logs had been loaded together. Each part's tables
        must name their sessions (a session column in its logs), as ``load_logs`` of several
        directories does; their rows are per session, so joining the tables joins the logs."""
        if len(parts) == 1:
            return parts[0]
        return cls(_concat_tables([p.destinations for p in parts]), _concat_tables([p.lookups for p in parts]),
                   sum(p.runs for p in parts))


def _runs(baseline) -> int:
    """Runs in a baseline (logs without a session column are one run); 0 without one."""
    if baseline is None:
        return 0
    if isinstance(baseline, Baseline):
        return baseline.runs
    return len(session_names(baseline)) or 1


def _concat_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    filled = [t for t in tables if not t.empty]
    return pd.concat(filled, ignore_index=True) if filled else tables[0]


def _frame(logs, name):
    if logs is None:
        return None
    df = getattr(logs, name, None)
    if df is None and isinstance(logs, dict):
        df = logs.get(name)
    return df


def dns_index(logs, conn=None) -> DnsIndex:
    """The DNS index of loaded logs: the one ``loading.load_for_analysis`` built as it read
    dns.log, else built from the ``dns`` frame (with ``conn``'s processes to point at)."""
    index = getattr(logs, "dns_index", None)
    if index is not None:
        return index
    return build_index(_frame(logs, "dns"), proc_uid_index(conn) if conn is not None else None)


def audit_findings(conn, dest, lookups, service_list, baseline_dest=None, baseline_lookups=None) -> list:
    """The audit-mode detectors: each pure, each a DataFrame of findings (see docs/analyze.md)."""
    return [
        services.known_services(lookups, dest, service_list),
        secret_names.secrets_in_queries(lookups),
        callbacks.dns_callbacks(lookups, baseline_lookups),
        encrypted_dns.encrypted_dns(dest),
        icmp_payload.icmp_payloads(conn),
        uploads.upload_volume(dest, baseline_dest),
        beacons.beaconing(conn, dest, baseline_dest),
    ]


def analyze(logs, policy=None, baseline=None, sessions=None, services_list=None, jobs=None,
            name_features: bool = True) -> AnalysisResult:
    """Analyze ``logs`` (anything with ``.conn`` and ``.dns`` DataFrames, e.g. ``LoadedLogs``, or
with ``.dns_index`` instead of a dns frame, as ``loading.load_for_analysis`` gives).

    ``policy``: a ``cicd_audit.policy.Policy`` or None. ``baseline``: logs of
    earlier runs of the same job, or their ``Baseline``, or None. ``sessions``: names to report when
    the logs carry no session column. ``services_list``: a
    ``services.ServiceList`` (default: the packaged list of known
    exfiltration and out-of-band services). ``jobs``: {session name: the job's
    identity} (``jobs.session_jobs``), named in the findings of those sessions.
    ``name_features``: False leaves ``result.tunnel.names`` empty (the findings are the same),
    for a report of a log with a tunnel's million names.
    """
    conn = _frame(logs, "conn")
    conn = conn if conn is not None else pd.DataFrame()
    index = dns_index(logs, conn)  # everything the analyzers read of dns.log: no frame is passed on
    tunnel = dns_tunnel.tunnel_features(None, conn if not conn.empty else None, index=index, keep_names=name_features)
    tunnel_findings = dns_tunnel.findings_from_features(tunnel)
    if baseline is not None and not isinstance(baseline, Baseline):
        baseline = Baseline.of_logs(baseline)
    base_tables = (baseline.destinations, baseline.lookups) if baseline is not None else None
    bdest, blook = base_tables or (None, None)
    dest_findings, dest, lookups = _dest.analyze_destinations(conn, None, policy, index=index, baseline=base_tables)
    # A tunnel domain is also a lookup outside the policy; report it once, as the tunnel.
    if not tunnel_findings.empty and not dest_findings.empty:
        tunnel_domains = set(tunnel_findings["indicator"])
        dest_findings = dest_findings[
            ~((dest_findings["analyzer"] == "unexpected_lookup") & dest_findings["indicator"].isin(tunnel_domains))
        ]
    audit = audit_findings(conn, dest, lookups, services_list or services.load_services(), bdest, blook)
    # a few-name tunnel is also a callback: report it once, as the tunnel
    if not tunnel_findings.empty:
        tunnel_domains = set(tunnel_findings["indicator"])
        audit = [a[~((a["analyzer"] == callbacks.ANALYZER) & a["indicator"].isin(tunnel_domains))] for a in audit]
    findings = concat_findings([tunnel_findings, dest_findings, *audit])
    findings = attach_processes(findings, conn, index)
    if sessions and len(sessions) == 1 and not index.sessions and "session" not in conn.columns and len(findings):
        findings["sessions"] = [list(s) if s else list(sessions) for s in findings["sessions"]]
    findings = attach_jobs(findings, jobs)
    summary = summarize(conn, index, dest, lookups, findings, policy, baseline, sessions)
    return AnalysisResult(findings=findings, summary=summary, tunnel=tunnel, destinations=dest, lookups=lookups)


def session_names(logs, given=None):
    """The sessions of loaded logs, in the order they were given (given: the names when the
    logs carry no session column, as for a single directory)."""
    return _session_names(_frame(logs, "conn"), dns_index(logs), given)


def _session_names(conn, index: DnsIndex, given):
    names = []
    if conn is not None and "session" in conn.columns:
        s = conn["session"]
        cats = list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype) else sorted(set(s.dropna().astype(str)))
        names += [str(c) for c in cats]
    names += [c for c in index.sessions if c not in names]
    return names or list(given or [])


def summarize(conn, index: DnsIndex, dest, lookups, findings, policy=None, baseline=None, sessions=None) -> dict:
    """The numbers of the report's header; ``index``: dns.log's (``dns_index``)."""
    ext = dest[~dest["resolver"] & ~dest["local"]] if not dest.empty else dest
    addrs = set(ext["address"]) if not ext.empty else set()
    allowed = unexpected = None
    if policy is not None and not ext.empty:
        # an address is allowed when every connection to it was allowed
        ok = ext.groupby("address")["allowed"].agg(lambda s: bool(s.fillna(False).all()))
        allowed = int(ok.sum())
        unexpected = int((~ok).sum())
    elif policy is not None:
        allowed = unexpected = 0
    direct = int(ext[ext["names"].map(len) == 0]["address"].nunique()) if not ext.empty else 0
    ts = [index.ts_min, index.ts_max]
    if conn is not None and not conn.empty and "ts" in conn.columns:
        ts += [conn["ts"].min(), conn["ts"].max()]
    ts = [t for t in ts if t is not None and pd.notna(t)]
    by_sev = {s: 0 for s in SEVERITIES}
    if not findings.empty:
        for s, n in findings["severity"].astype(str).value_counts().items():
            by_sev[s] = int(n)
    n_base = _runs(baseline)
    return {
        "sessions": _session_names(conn, index, sessions),
        "first_seen": min(ts).isoformat() if ts else None,
        "last_seen": max(ts).isoformat() if ts else None,
        "connections": int(len(conn)) if conn is not None else 0,
        "unique_destinations": len(addrs),
        "allowed_destinations": allowed,
        "unexpected_destinations": unexpected,
        "direct_ip_destinations": direct,
        "bytes_sent": int(ext["orig_bytes"].sum()) if not ext.empty else 0,
        "dns_queries": index.total_rows,
        "dns_names": int(lookups["name"].nunique()) if not lookups.empty else 0,
        "registered_domains": int(lookups["registered_domain"].nunique()) if not lookups.empty else 0,
        "policy": getattr(policy, "source", None) if policy is not None else None,
        "baseline_sessions": n_base,
        "findings": int(len(findings)),
        "findings_by_severity": by_sev,
    }
