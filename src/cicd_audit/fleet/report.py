"""Render a fleet analysis (``analyze --store``) as terminal text, JSON or Markdown.

JSON shape (fields are only ever added)::

    {"findings": [{"repository", "workflow", "session", "analyzer", "severity", "indicator",
                   "summary", "evidence", "sessions"}, ...],          # as analyze's, plus the job identity
     "sessions": [{"session", "repository", "workflow", "first_seen", "baseline", "summary"}, ...],
     "summary": {"schema_version": 1, "store", "sessions", "workflows", "findings", "findings_by_severity"}}

Names in logs are data an attacker chooses: they go through the analyzers'
``safe_text`` (escaped control characters, inert Markdown), as in ``analyze``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ..analyzers.findings import SEVERITIES, at_or_above
from ..safe_text import for_markdown, for_terminal

JSON_SCHEMA_VERSION = 1
_terminal = for_terminal
_markdown = for_markdown


def _jsonable(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if math.isnan(o) else float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, pd.Timestamp):
        return o.isoformat()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if o is pd.NA or o is pd.NaT:
        return None
    return str(o)


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def summary(result, store_url) -> dict:
    f = result.findings
    by_sev = {s: int((f["severity"].astype(str) == s).sum()) for s in SEVERITIES}
    wf = result.sessions[["repository", "workflow"]].drop_duplicates() if len(result.sessions) else []
    return {"schema_version": JSON_SCHEMA_VERSION, "store": str(store_url), "sessions": int(len(result.sessions)),
            "workflows": int(len(wf)), "findings": int(len(f)), "findings_by_severity": by_sev}


def render_json(result, min_severity, store_url) -> str:
    shown = at_or_above(result.findings, min_severity)
    findings = [{**r, "severity": str(r["severity"])} for r in shown.to_dict("records")]
    doc = {"findings": findings, "sessions": result.sessions.to_dict("records"), "summary": summary(result, store_url)}
    return json.dumps(doc, indent=1, default=_jsonable) + "\n"


def _header(result, store_url) -> list:
    s = summary(result, store_url)
    first = result.sessions["first_seen"].min() if len(result.sessions) else None
    last = result.sessions["first_seen"].max() if len(result.sessions) else None
    span = f", {first:%Y-%m-%d} .. {last:%Y-%m-%d}" if first is not None and pd.notna(first) else ""
    counts = ", ".join(f"{s['findings_by_severity'][v]} {v}" for v in reversed(SEVERITIES) if s["findings_by_severity"][v])
    return [f"cicd-audit analyze: {_n(s['sessions'], 'session')} of {_n(s['workflows'], 'workflow')} in {store_url}{span}",
            f"  findings     {counts or 'none'}"]


def render_text(result, min_severity, store_url) -> str:
    lines = _header(result, store_url)
    for r in at_or_above(result.findings, min_severity).itertuples(index=False):
        lines.append("")
        lines.append(f"{str(r.severity).upper():9} {r.analyzer:23} {_terminal(r.indicator)}")
        lines.append(f"          {_terminal(r.repository)} {_terminal(r.workflow)} {_terminal(r.session)}: {_terminal(r.summary)}")
    return "\n".join(lines) + "\n"


def render_markdown(result, min_severity, store_url) -> str:
    lines = ["### " + _markdown(_header(result, store_url)[0].removeprefix("cicd-audit analyze: ")), "",
             _markdown(_header(result, store_url)[1].strip()), ""]
    shown = at_or_above(result.findings, min_severity)
    if len(shown):
        lines += ["| severity | analyzer | indicator | repository | workflow | session | summary |", "|---|---|---|---|---|---|---|"]
        for r in shown.itertuples(index=False):
            cells = [str(r.severity), r.analyzer, r.indicator, r.repository, r.workflow, r.session, r.summary]
            lines.append("| " + " | ".join(_markdown(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render(result, fmt, min_severity, store_url) -> str:
    return {"text": render_text, "json": render_json, "markdown": render_markdown}[fmt](result, min_severity, store_url)
