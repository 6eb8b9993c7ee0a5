"""Render an analysis as terminal text, JSON or Markdown (for $GITHUB_STEP_SUMMARY).

JSON shape (stable; fields are only ever added)::

    {"findings": [{"analyzer", "severity", "indicator", "summary", "evidence", "sessions"}, ...],
     "summary": {"schema_version": 1, "sessions", "connections", "unique_destinations", ...}}
"""

from __future__ import annotations

import datetime as _dt
import json
import math

import numpy as np
import pandas as pd

from .findings import SEVERITIES, at_or_above, counted
from .safe_text import for_markdown, for_markdown_code, for_terminal

JSON_SCHEMA_VERSION = 1


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if math.isnan(o) else float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (pd.Timestamp, _dt.datetime)):
        return o.isoformat()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if o is pd.NA or o is pd.NaT:
        return None
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def findings_records(findings: pd.DataFrame) -> list[dict]:
    out = []
    for r in findings.itertuples(index=False):
        out.append(
            {
                "analyzer": r.analyzer,
                "severity": str(r.severity),
                "indicator": r.indicator,
                "summary": r.summary,
                "evidence": r.evidence if isinstance(r.evidence, dict) else {},
                "sessions": list(r.sessions) if isinstance(r.sessions, (list, tuple)) else [],
            }
        )
    return out


def render_json(result, min_severity: str = "info") -> str:
    summary = {"schema_version": JSON_SCHEMA_VERSION, **result.summary}
    doc = {"findings": findings_records(at_or_above(result.findings, min_severity)), "summary": summary}
    return json.dumps(doc, indent=2, default=_jsonable, ensure_ascii=False) + "\n"


def _n(x) -> str:
    return f"{x:,}"


def _time_range(s: dict) -> str:
    a, b = s.get("first_seen"), s.get("last_seen")
    if not a:
        return ""
    ta, tb = pd.Timestamp(a), pd.Timestamp(b)
    if ta.date() == tb.date():
        return f"{ta:%Y-%m-%d %H:%M:%S}-{tb:%H:%M:%S} UTC"
    return f"{ta:%Y-%m-%d %H:%M:%S} - {tb:%Y-%m-%d %H:%M:%S} UTC"


def _connections_line(s: dict) -> str:
    line = f"{counted(s['connections'], 'connection')} to {counted(s['unique_destinations'], 'destination')}"
    parts = []
    if s.get("allowed_destinations") is not None:
        parts.append(f"{_n(s['allowed_destinations'])} allowed")
        parts.append(f"{_n(s['unexpected_destinations'])} unexpected")
    else:
        parts.append("no policy given")
    parts.append(f"{_n(s['direct_ip_destinations'])} direct-to-IP")
    return f"{line} ({', '.join(parts)})"


def _dns_line(s: dict) -> str:
    return (f"{counted(s['dns_queries'], 'query', 'queries')}, {counted(s['dns_names'], 'name')}, "
            f"{counted(s['registered_domains'], 'registered domain')}")


def _findings_line(s: dict) -> str:
    by = s["findings_by_severity"]
    if not s["findings"]:
        return "none"
    return ", ".join(f"{by[sev]} {sev}" for sev in reversed(SEVERITIES) if by.get(sev))


def _sessions_text(s: dict, safe=for_terminal) -> str:
    ss = s.get("sessions") or []
    if not ss:
        return "1 session"
    head = ", ".join(safe(x) for x in ss[:3]) + (" ..." if len(ss) > 3 else "")
    return f"{len(ss)} session{'s' if len(ss) != 1 else ''} ({head})"


def render_text(result, min_severity: str = "info", width: int = 100) -> str:
    s = result.summary
    lines = [f"cicd-audit analyze: {_sessions_text(s)}" + (f", {_time_range(s)}" if s.get("first_seen") else "")]
    if s.get("baseline_sessions"):
        lines[0] += f", against {s['baseline_sessions']} baseline session{'s' if s['baseline_sessions'] != 1 else ''}"
    lines += [
        f"  connections  {_connections_line(s)}",
        f"  DNS          {_dns_line(s)}",
        f"  findings     {_findings_line(s)}",
    ]
    shown = at_or_above(result.findings, min_severity)
    if len(shown):
        lines.append("")
        for r in shown.itertuples(index=False):
            # indicator and summary carry names from the logs: never let them act on the terminal
            lines.append(f"{str(r.severity).upper():<9} {r.analyzer:<23} {for_terminal(r.indicator)}")
            lines.append(f"{'':<9} {for_terminal(r.summary)}")
    hidden = len(result.findings) - len(shown)
    if hidden:
        lines.append("")
        lines.append(f"({hidden} finding{'s' if hidden != 1 else ''} below {min_severity} not shown)")
    return "\n".join(lines) + "\n"


def _md_cell(text) -> str:
    """Text from a log (or built around it) as an inert table cell."""
    return for_markdown(text)


def render_markdown(result, min_severity: str = "info") -> str:
    s = result.summary
    out = ["## cicd-audit network audit", ""]
    out.append(f"{_sessions_text(s, safe=for_markdown)}" + (f", {_time_range(s)}" if s.get("first_seen") else ""))
    out.append("")
    out.append("| | |")
    out.append("|---|---|")
    out.append(f"| Connections | {_md_cell(_connections_line(s))} |")
    out.append(f"| DNS | {_md_cell(_dns_line(s))} |")
    out.append(f"| Findings | {_md_cell(_findings_line(s))} |")
    if s.get("baseline_sessions"):
        out.append(f"| Baseline | {s['baseline_sessions']} earlier sessions |")
    shown = at_or_above(result.findings, min_severity)
    out.append("")
    if len(shown):
        out.append("### Findings")
        out.append("")
        out.append("| Severity | Analyzer | Indicator | Summary |")
        out.append("|---|---|---|---|")
        for r in shown.itertuples(index=False):
            out.append(
                f"| **{_md_cell(str(r.severity))}** | {_md_cell(r.analyzer)} | {for_markdown_code(r.indicator)} | {_md_cell(r.summary)} |"
            )
    else:
        out.append("No findings.")
    return "\n".join(out) + "\n"


RENDERERS = {"text": render_text, "json": render_json, "markdown": render_markdown}
