"""The report's sentences, shared by the terminal, Markdown and HTML renderers.

Plain text built from a ``report_model.Report``: counts with their noun in the
right number, shares and sizes a person checks at a glance. Strings from the
logs (session names) pass through unescaped; every caller neutralizes the
result for its output (``safe_text``).

``verdict_line(r)``, ``metric_rows(r)`` (label, value, what a bad value may
mean), ``time_range(r)``, ``sessions_text(r)``, ``share(a, b)``.
"""

from __future__ import annotations

import pandas as pd

from .findings import SEVERITIES, counted, human_bytes, human_duration
from .report_model import Report


def share(part: int, whole: int) -> str:
    """'0%', '<1%', '37%', '100%': a share that never rounds a non-zero part to zero."""
    if not whole:
        return "-"
    p = 100.0 * part / whole
    if 0 < p < 1:
        return "<1%"
    if 99 < p < 100:
        return ">99%"
    return f"{p:.0f}%"


def time_range(r: Report) -> str:
    a, b = r.first_seen, r.last_seen
    if a is None:
        return ""
    span = human_duration((b - a).total_seconds())
    if a.date() == b.date():
        return f"{a:%Y-%m-%d %H:%M:%S}-{b:%H:%M:%S} UTC ({span})"
    return f"{a:%Y-%m-%d %H:%M:%S} - {b:%Y-%m-%d %H:%M:%S} UTC ({span})"


def sessions_text(r: Report, limit: int = 3) -> str:
    ss = list(r.sessions)
    if not ss:
        return "1 session"
    head = ", ".join(ss[:limit]) + (" ..." if len(ss) > limit else "")
    return f"{counted(len(ss), 'session')} ({head})"


def _severity_counts(r: Report) -> str:
    by = r.findings_by_severity
    return ", ".join(f"{by[s]} {s}" for s in reversed(SEVERITIES) if by.get(s))


def verdict_word(r: Report) -> str:
    return "PASS" if r.verdict.passed else "FAIL"


def verdict_line(r: Report) -> str:
    """'FAIL: 2 findings at or above high; 3 attempts blocked' (the word first, for a glance)."""
    v = r.verdict
    n = len(r.findings)
    if v.fail_on is None:
        judged = "no --fail-on given" + (f" ({counted(n, 'finding')}: {_severity_counts(r)})" if n else ", no findings")
    elif v.failing_findings:
        judged = f"{counted(v.failing_findings, 'finding')} at or above {v.fail_on}"
    else:
        judged = f"no finding at or above {v.fail_on}" + (f" ({counted(n, 'finding')} below it)" if n else "")
    blocked = f"{counted(v.blocked_attempts, 'attempt')} blocked" if v.blocked_attempts else "nothing blocked"
    return f"{verdict_word(r)}: {judged}; {blocked}"


def metric_rows(r: Report) -> list[tuple[str, str, str]]:
    """(label, value, what it may mean) for each key metric, in the order a reader checks them."""
    m = r.metrics
    blocked = f"{m.blocked_attempts:,} blocked ({share(m.blocked_attempts, m.connection_attempts)})"
    if m.blocked_lookups:
        blocked += f", and {counted(m.blocked_lookups, 'DNS query', 'DNS queries')} refused"
    return [
        ("Connection attempts", f"{counted(m.connection_attempts, 'attempt')} to "
         f"{counted(m.unique_destinations, 'destination')}", "DNS lookups to the resolver are counted under DNS"),
        ("Blocked vs allowed", f"{m.allowed_attempts:,} allowed, {blocked}",
         "a high block rate means an attack or a policy that misses what the job needs"),
        ("Unique destinations", f"{counted(m.unique_destinations, 'address', 'addresses')} in "
         f"{counted(len(r.domains), 'registered domain')}",
         "an unexpected destination may mean a compromised dependency"),
        ("Potential exfiltration", counted(m.exfiltration_attempts, "finding"),
         "DNS tunnels, secrets in names, callbacks, uploads, ICMP payloads"),
        ("Unauthorized service access", counted(m.unauthorized_access, "finding"),
         "outside the policy, direct to IP, hidden DNS"),
        ("Repeated attempts", counted(m.repeated_attempts, "destination"),
         "beaconing, or blocked again and again: something keeps trying"),
        ("Known-malicious destinations", counted(m.known_malicious, "finding"),
         "on the list of exfiltration and out-of-band services"),
        ("Data", f"{human_bytes(m.bytes_sent)} sent, {human_bytes(m.bytes_received)} received", ""),
        ("DNS", counted(m.dns_queries, "query", "queries"), ""),
    ]


def ts_text(t: pd.Timestamp | None) -> str:
    return "" if t is None else f"{t:%Y-%m-%d %H:%M:%S} UTC"
