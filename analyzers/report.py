"""Render an analysis as terminal text, JSON, Markdown (for $GITHUB_STEP_SUMMARY) or one HTML page.

Every renderer takes the ``AnalysisResult`` and, optionally, the
``report_model.Report`` built from it and the logs (``build_report``; the CLI
builds it once, with ``--fail-on``); without one it builds it from the result
alone. Order, in each: the verdict, the key metrics, the findings with their
process and step, then what the job contacted. HTML: ``report_html``.

JSON shape (stable; fields are only ever added)::

    {"findings": [{"analyzer", "severity", "indicator", "summary", "evidence", "sessions"}, ...],
     "summary": {"schema_version": 1, "sessions", "connections", "unique_destinations", ...,
                 "report": {"verdict", "metrics", "domains", "timeline"}}}
"""

from __future__ import annotations

import datetime as _dt
import json
import math

import numpy as np
import pandas as pd

from ..safe_text import for_markdown, for_markdown_code, for_terminal
from .findings import SEVERITIES, at_or_above, counted, human_bytes
from .report_model import UNKNOWN_PROCESS, Report, as_dict, build_report
from .report_wording import metric_rows, sessions_text, time_range, verdict_line

JSON_SCHEMA_VERSION = 1

#: Registered domains listed in the terminal and Markdown reports (the HTML page lists all of them):
#: a step summary a person reads, not an inventory; the rest are counted.
TEXT_DOMAINS = 10
MARKDOWN_DOMAINS = 40
MARKDOWN_PROCESSES = 10


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


def to_json(obj, indent: int | None = 2) -> str:
    """``obj`` as JSON, numpy and pandas values included (non-ASCII kept, control characters escaped)."""
    return json.dumps(obj, indent=indent, default=_jsonable, ensure_ascii=False)


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


def _report(result, report: Report | None) -> Report:
    return report if report is not None else build_report(result)


def render_json(result, min_severity: str = "info", report: Report | None = None) -> str:
    summary = {"schema_version": JSON_SCHEMA_VERSION, **result.summary, "report": as_dict(_report(result, report))}
    doc = {"findings": findings_records(at_or_above(result.findings, min_severity)), "summary": summary}
    return to_json(doc) + "\n"


def _n(x) -> str:
    return f"{x:,}"


def _connections_line(s: dict, attempts: int) -> str:
    """The model's attempts (what the HTML and markdown count), and conn.log's rows when they differ."""
    line = f"{counted(attempts, 'attempt')} to {counted(s['unique_destinations'], 'destination')}"
    parts = []
    if s.get("allowed_destinations") is not None:
        parts.append(f"{_n(s['allowed_destinations'])} allowed")
        parts.append(f"{_n(s['unexpected_destinations'])} unexpected")
    else:
        parts.append("no policy given")
    parts.append(f"{_n(s['direct_ip_destinations'])} direct-to-IP")
    rows = "" if s["connections"] == attempts else (
        f"; {counted(s['connections'], 'row')} in conn.log with DNS to the resolver and local traffic")
    return f"{line} ({', '.join(parts)}){rows}"


def _dns_line(s: dict) -> str:
    return (f"{counted(s['dns_queries'], 'query', 'queries')}, {counted(s['dns_names'], 'name')}, "
            f"{counted(s['registered_domains'], 'registered domain')}")


def _findings_line(s: dict) -> str:
    by = s["findings_by_severity"]
    if not s["findings"]:
        return "none"
    return ", ".join(f"{by[sev]} {sev}" for sev in reversed(SEVERITIES) if by.get(sev))


def _who(processes, steps) -> str:
    """'by curl (pid 12), python3 (pid 9) in CI step build' (empty when the logs name no process)."""
    if not processes:
        return ""
    more = f" and {len(processes) - 3} more" if len(processes) > 3 else ""
    where = f" in CI step {', '.join(steps[:2])}" if steps else ""
    return f"by {', '.join(processes[:3])}{more}{where}"


def _group_status(g) -> str:
    states = sorted({d.status for d in g.destinations})
    return "/".join(states)


def _hidden_note(hidden: int, min_severity: str) -> str:
    return f"({counted(hidden, 'finding')} below {min_severity} not shown)"


def render_text(result, min_severity: str = "info", report: Report | None = None, width: int = 100) -> str:
    r = _report(result, report)
    s = result.summary
    t = for_terminal  # every string from a log goes through it
    lines = [verdict_line_text(r)]
    head = f"cicd-audit analyze: {t(sessions_text(r))}" + (f", {time_range(r)}" if r.first_seen is not None else "")
    if r.baseline_sessions:
        head += f", against {counted(r.baseline_sessions, 'baseline session')}"
    lines.append(head)
    lines += [
        f"  connections  {_connections_line(s, r.metrics.connection_attempts)}",
        f"  DNS          {_dns_line(s)}",
        f"  findings     {_findings_line(s)}",
    ]
    by_label = {label: value for label, value, _ in metric_rows(r)}
    lines.append(f"  blocked      {by_label['Blocked vs allowed']}")
    m = r.metrics
    lines.append(f"  risk         potential exfiltration {m.exfiltration_attempts:,}, unauthorized access "
                 f"{m.unauthorized_access:,}, repeated attempts {m.repeated_attempts:,}, known-malicious {m.known_malicious:,}")
    lines.append(f"  data         {by_label['Data']}")
    shown = r.shown_findings(min_severity)
    if shown:
        lines.append("")
        for f in shown:
            # indicator and summary carry names from the logs: never let them act on the terminal
            lines.append(f"{f.severity.upper():<9} {f.analyzer:<23} {t(f.indicator)}")
            lines.append(f"{'':<9} {t(f.summary)}")
            if r.multi_session and f.sessions:
                lines.append(f"{'':<9} in {t(', '.join(f.sessions[:3]))}{' ...' if len(f.sessions) > 3 else ''}")
    hidden = len(r.findings) - len(shown)
    if hidden:
        lines.append("")
        lines.append(_hidden_note(hidden, min_severity))
    if r.domains:
        lines.append("")
        lines.append(f"Contacted: {counted(len(r.domains), 'registered domain')}, blocked first, then most data sent")
        for g in r.domains[:TEXT_DOMAINS]:
            who = ", ".join(g.processes[:2])
            lines.append(f"  {t(g.domain):<32} {counted(g.connections, 'connection'):>16}  "
                         f"{human_bytes(g.bytes_sent):>8} sent  {human_bytes(g.bytes_received):>8} received  "
                         f"{_group_status(g)}" + (f"  {t(who)}" if who else ""))
        if len(r.domains) > TEXT_DOMAINS:
            lines.append(f"  ... {counted(len(r.domains) - TEXT_DOMAINS, 'more domain')}: --format html lists every one")
    return "\n".join(lines) + "\n"


def verdict_line_text(r: Report) -> str:
    return for_terminal(verdict_line(r))


def _md_cell(text) -> str:
    """Text from a log (or built around it) as an inert table cell."""
    return for_markdown(text)


def _md_sessions(sessions) -> str:
    return _md_cell(", ".join(sessions[:3]) + (" ..." if len(sessions) > 3 else ""))


def render_markdown(result, min_severity: str = "info", report: Report | None = None) -> str:
    r = _report(result, report)
    icon = ":white_check_mark:" if r.verdict.passed else ":x:"
    out = ["## cicd-audit network audit", ""]
    out.append(f"{icon} **{_md_cell(verdict_line(r))}**")
    out.append("")
    out.append(_md_cell(sessions_text(r)) + (f", {_md_cell(time_range(r))}" if r.first_seen is not None else ""))
    out.append("")
    out.append("| Metric | Value | What it may mean |")
    out.append("|---|---|---|")
    for label, value, hint in metric_rows(r):
        out.append(f"| {_md_cell(label)} | {_md_cell(value)} | {_md_cell(hint)} |")
    if r.baseline_sessions:
        out.append(f"| Baseline | {_md_cell(counted(r.baseline_sessions, 'earlier session'))} | |")
    shown = r.shown_findings(min_severity)
    out.append("")
    many = r.multi_session
    if shown:
        out.append("### Findings")
        out.append("")
        out.append("| Severity | Analyzer | Indicator | Summary | Process and step |" + (" Session |" if many else ""))
        out.append("|---|---|---|---|---|" + ("---|" if many else ""))
        for f in shown:
            row = (f"| **{_md_cell(f.severity)}** | {_md_cell(f.analyzer)} | {for_markdown_code(f.indicator)} | "
                   f"{_md_cell(f.summary)} | {_md_cell(_who(f.processes, f.steps)) or '-'} |")
            out.append(row + (f" {_md_sessions(f.sessions)} |" if many else ""))
        hidden = len(r.findings) - len(shown)
        if hidden:
            out += ["", _md_cell(_hidden_note(hidden, min_severity))]
    elif r.findings:
        out.append(_md_cell(_hidden_note(len(r.findings), min_severity)))
    else:
        out.append(f"No findings. The job contacted {counted(len(r.domains), 'registered domain')}, listed below.")
    out += ["", *_markdown_destinations(r), *_markdown_processes(r)]
    return "\n".join(out) + "\n"


def _markdown_processes(r: Report) -> list[str]:
    """Who made the traffic: the timeline's rows as a table (the HTML page draws them), when the logs name processes."""
    rows = [p for p in r.timeline.rows if p.process != UNKNOWN_PROCESS]
    if not rows:
        return []
    out = ["", "### Processes", "", "| Process | CI step | Connections | Blocked | Sent | Active |", "|---|---|---|---|---|---|"]
    for p in rows[:MARKDOWN_PROCESSES]:
        out.append(f"| {_md_cell(p.process)} | {_md_cell(p.step or '-')} | {p.connections:,} | {p.blocked:,} | "
                   f"{human_bytes(p.bytes_sent)} | {_md_cell(_active_span(r, p))} |")
    return out


def _active_span(r: Report, p) -> str:
    """'08:53:20-08:55:30': from the process's first to its last busy time bucket."""
    busy = [i for i, c in enumerate(p.counts) if c]
    if not busy or r.timeline.start is None:
        return "-"
    step = pd.Timedelta(seconds=r.timeline.bucket_seconds)
    a, b = r.timeline.start + step * busy[0], r.timeline.start + step * (busy[-1] + 1)
    return f"{a:%H:%M:%S}-{min(b, r.timeline.end):%H:%M:%S}"


def _markdown_destinations(r: Report) -> list[str]:
    if not r.domains:
        return ["conn.log has no connection to a destination outside the host."]
    many = r.multi_session
    out = ["### What the job contacted", "",
           f"{counted(len(r.domains), 'registered domain')}, blocked first, then most data sent"
           + (f" (the first {MARKDOWN_DOMAINS}; the HTML report lists every one)" if len(r.domains) > MARKDOWN_DOMAINS else "")
           + ".", ""]
    out.append("| Domain | Addresses | Process | Sent | Received | Connections | Status |" + (" Session |" if many else ""))
    out.append("|---|---|---|---|---|---|---|" + ("---|" if many else ""))
    for g in r.domains[:MARKDOWN_DOMAINS]:
        addrs = [d.address for d in g.destinations]
        addr_text = ", ".join(dict.fromkeys(addrs[:3])) + (f" and {len(set(addrs)) - 3} more" if len(set(addrs)) > 3 else "")
        procs = ", ".join(g.processes[:3]) or "-"
        row = (f"| {for_markdown_code(g.domain)} | {_md_cell(addr_text)} | {_md_cell(procs)} | {human_bytes(g.bytes_sent)} | "
               f"{human_bytes(g.bytes_received)} | {g.connections:,} | {_md_cell(_group_status(g))} |")
        if many:
            row += f" {_md_sessions(list(dict.fromkeys(d.session for d in g.destinations)))} |"
        out.append(row)
    return out


def render_html(result, min_severity: str = "info", report: Report | None = None) -> str:
    from .report_html import render_page

    return render_page(_report(result, report), min_severity=min_severity)


RENDERERS = {"text": render_text, "json": render_json, "markdown": render_markdown, "html": render_html}
