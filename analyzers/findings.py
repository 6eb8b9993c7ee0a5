"""The finding: what every analyzer returns, and the order of severities.

A finding is one row of a DataFrame with the columns in ``FINDING_COLUMNS``:

``analyzer``   which analyzer produced it (see ``ANALYZERS``)
``severity``   ``info`` < ``low`` < ``medium`` < ``high`` < ``critical``
``indicator``  the registered domain or address the finding is about
``summary``    one sentence with the evidence, for a person
``evidence``   a dict of the numbers behind it (JSON-serialisable)
``sessions``   the session names it was seen in (list of str)

This is the JSON schema of ``cicd-audit analyze --format json`` (see
docs/analyze.md); fields are only ever added, never renamed or removed.
"""

from __future__ import annotations

import functools

import pandas as pd

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
SEVERITY_DTYPE = pd.CategoricalDtype(SEVERITIES, ordered=True)

FINDING_COLUMNS = ["analyzer", "severity", "indicator", "summary", "evidence", "sessions"]

#: analyzer name -> what it reports (shown by --help and in docs/analyze.md)
ANALYZERS = {
    "dns_tunnel": "a registered domain whose query names carry encoded data (DNS tunnel or exfiltration)",
    "unexpected_destination": "connections to addresses resolved from names the policy does not allow",
    "direct_ip": "connections to addresses that no DNS answer in the session explains",
    "unexpected_lookup": "lookups of names outside the policy that no connection followed",
    "new_destination": "a destination (domain or address) never contacted in the baseline sessions",
    "new_domain": "a registered domain looked up but never looked up in the baseline sessions",
    "known_service": "lookups of or connections to a known exfiltration/out-of-band service (OAST, webhook, paste, tunnel, dynamic DNS)",
    "secret_in_query": "a credential-shaped string (cloud/CI token formats) in query names, raw or hex/base32/base64",
    "dns_callback": "one to a few lookups whose labels decode to host data (dependency-confusion style callbacks)",
    "encrypted_dns": "DNS-over-TLS/QUIC (port 853) or DNS-over-HTTPS to a known resolver: lookups hidden from dns.log",
    "icmp_payload": "data in ICMP echo payloads beyond what ping needs, or in IP protocols other than TCP/UDP/ICMP",
    "upload_volume": "far more bytes sent to a destination than in any baseline run",
    "beaconing": "connections at near-constant intervals and sizes (RITA-style beacon score)",
}


def make_findings(records: list[dict]) -> pd.DataFrame:
    """A findings DataFrame (columns ``FINDING_COLUMNS``) from a list of dicts, most severe first."""
    if not records:
        return _no_findings().copy()
    df = pd.DataFrame(records, columns=FINDING_COLUMNS)
    df["severity"] = df["severity"].astype(SEVERITY_DTYPE)
    if df["severity"].isna().any():
        bad = sorted(set(r.get("severity") for r in records) - set(SEVERITIES))
        raise ValueError(f"unknown severity {bad}; expected one of {', '.join(SEVERITIES)}")
    return sort_findings(df)


def empty_findings() -> pd.DataFrame:
    return make_findings([])


@functools.cache
def _no_findings() -> pd.DataFrame:
    """Built once: most analyzers find nothing in most sessions, and a DataFrame costs ms to make."""
    df = pd.DataFrame({c: pd.Series(dtype=object) for c in FINDING_COLUMNS})
    df["severity"] = df["severity"].astype(SEVERITY_DTYPE)
    return df


def sort_findings(df: pd.DataFrame) -> pd.DataFrame:
    """Most severe first, then by analyzer and indicator (stable, so reports are deterministic)."""
    if df.empty:
        return df.reset_index(drop=True)
    key = df["severity"].cat.codes
    out = df.assign(_k=-key).sort_values(["_k", "analyzer", "indicator"], kind="stable").drop(columns="_k")
    return out.reset_index(drop=True)


def concat_findings(frames) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and not f.empty]
    if not frames:
        return empty_findings()
    df = pd.concat(frames, ignore_index=True)
    df["severity"] = df["severity"].astype(SEVERITY_DTYPE)
    return sort_findings(df)


def annotate_findings(findings: pd.DataFrame, add) -> pd.DataFrame:
    """Each finding with what ``add(row, evidence)`` knows of it: it adds keys to ``evidence``
    (the finding's own, copied) and returns a clause the summary ends with ("by node (pid
    4211)"), or None."""
    evidence, summaries = [], []
    for r in findings.itertuples(index=False):
        ev = dict(r.evidence) if isinstance(r.evidence, dict) else {}
        clause = add(r, ev)
        summaries.append(f"{r.summary}; {clause}" if clause else r.summary)
        evidence.append(ev)
    out = findings.copy()
    out["evidence"] = evidence
    out["summary"] = summaries
    return out


def at_or_above(df: pd.DataFrame, severity: str) -> pd.DataFrame:
    """Findings whose severity is at least ``severity``."""
    if severity not in SEVERITY_RANK:
        raise ValueError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}")
    if df.empty:
        return df
    return df[df["severity"].cat.codes >= SEVERITY_RANK[severity]]


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """"1 destination", "2 destinations", "1,234 queries": a count with its noun in the right number."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def human_bytes(n: float) -> str:
    """1234 -> '1.2 KB' (powers of 1000, as people read them in a summary)."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            if unit == "B":
                return f"{int(round(n))} B"
            return f"{n:.0f} {unit}" if n >= 10 else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"


def human_duration(seconds: float) -> str:
    s = float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def every(seconds: float, singular: str, plural: str | None = None) -> str:
    """'one query every 20 s', '40 queries a second': a rate as a person says it, never 'every 0.0 s'."""
    s = float(seconds)
    many = plural or singular + "s"
    if s >= 1:
        return f"one {singular} every {human_duration(s)}"
    if s <= 0:
        return f"{many} with no gap between them"
    per_second = 1.0 / s
    return f"one {singular} a second" if per_second < 1.5 else f"{per_second:,.0f} {many} a second"
