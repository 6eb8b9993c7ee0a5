"""The report as one self-contained HTML page: a CI artifact a person opens in a browser.

``render_page(report, min_severity)`` returns the page: inline CSS, an inline
SVG timeline, no script, no font, no image, no link to anything. A Content
Security Policy (``default-src 'none'``) tells the browser to fetch nothing
and run nothing even if some text escaped its escaping; every string from a
log goes through ``safe_text.for_html`` first, the only way text reaches the
page (``_h``).

Order: the verdict, the key metrics, the findings (evidence folded under
each), the network activity per process, then every destination the job
contacted, grouped by registered domain.
"""

from __future__ import annotations

from ..safe_text import for_html as _h
from .findings import counted, human_bytes
from .report_model import DomainGroup, FindingView, Report, Timeline
from .report_wording import metric_rows, sessions_text, time_range, ts_text, verdict_line, verdict_word

#: Destinations listed on the page; beyond it the page says how many are left out
#: (a tunnel capture with hundreds of thousands of them would make a page no one opens).
MAX_DESTINATIONS = 3000

#: Evidence shown per finding (characters of JSON): the numbers, not a dump.
MAX_EVIDENCE_CHARS = 4000

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1f24;background:#fff}
main{max-width:1180px;margin:0 auto;padding:0 20px 40px}
header.verdict{padding:18px 20px;color:#fff}
header.pass{background:#1a7f37}header.fail{background:#cf222e}
header h1{margin:0;font-size:26px}header p{margin:4px 0 0}
h2{margin:28px 0 8px;font-size:18px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:4px 8px;border-bottom:1px solid #eaeef2}
th{background:#f6f8fa;font-weight:600}
td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,monospace;word-break:break-all}
td.addr code,td.st{white-space:nowrap;word-break:normal}
pre{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-all;background:#f6f8fa;padding:6px;margin:4px 0}
.hint{color:#57606a}
.sev{display:inline-block;padding:0 6px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.critical{background:#82071e}.high{background:#cf222e}.medium{background:#bc4c00}.low{background:#9a6700}.info{background:#57606a}
tr.group th{background:#eef1f4}
.blocked{color:#cf222e;font-weight:600}.partly{color:#bc4c00}.outside{color:#bc4c00}
svg text{font:11px system-ui,sans-serif;fill:#1b1f24}
"""


def _num(n: int) -> str:
    return f"{n:,}"


def _table(head: list[str], rows: list[str]) -> str:
    ths = "".join(f"<th>{h}</th>" for h in head)
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _metrics(r: Report) -> str:
    rows = [f"<tr><th>{_h(label)}</th><td>{_h(value)}</td><td class=hint>{_h(hint)}</td></tr>"
            for label, value, hint in metric_rows(r)]
    return "<section id=metrics><h2>Key metrics</h2>" + _table(["Metric", "Value", "What it may mean"], rows) + "</section>"


def _evidence(ev: dict) -> str:
    from .report import to_json

    text = to_json(ev)
    if len(text) > MAX_EVIDENCE_CHARS:
        text = text[:MAX_EVIDENCE_CHARS] + "\n... (cut; --format json has all of it)"
    return f"<details><summary>evidence</summary><pre>{_h(text)}</pre></details>"


def _finding_row(f: FindingView, many: bool) -> str:
    who = ", ".join(f.processes) or "-"
    step = ", ".join(f.steps)
    cells = [
        f"<td><span class='sev {_h(f.severity)}'>{_h(f.severity)}</span></td>",
        f"<td>{_h(f.analyzer)}</td>",
        f"<td><code>{_h(f.indicator)}</code></td>",
        f"<td>{_h(f.summary)}{_evidence(f.evidence)}</td>",
        f"<td>{_h(who)}" + (f"<br><span class=hint>step {_h(step)}</span>" if step else "") + "</td>",
    ]
    if many:
        cells.append(f"<td>{_h(', '.join(f.sessions))}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


def _findings(r: Report, min_severity: str) -> str:
    shown = r.shown_findings(min_severity)
    out = ["<section id=findings><h2>Findings</h2>"]
    if shown:
        head = ["Severity", "Analyzer", "Indicator", "Summary and evidence", "Process and step"] + (["Session"] if r.multi_session else [])
        out.append(_table(head, [_finding_row(f, r.multi_session) for f in shown]))
    hidden = len(r.findings) - len(shown)
    if hidden:
        out.append(f"<p class=hint>{_h(counted(hidden, 'finding'))} below {_h(min_severity)} not shown.</p>")
    if not r.findings:
        out.append(f"<p>No findings. The job contacted {_h(counted(len(r.domains), 'registered domain'))}, listed below.</p>")
    out.append("</section>")
    return "".join(out)


def _status_class(status: str) -> str:
    return {"blocked": "blocked", "partly blocked": "partly", "outside policy": "outside"}.get(status, "")


def _group_rows(g: DomainGroup, many: bool, budget: int) -> list[str]:
    span = 8 if many else 7
    rows = [f"<tr class=group><th colspan={span - 4}><code>{_h(g.domain)}</code> "
            f"<span class=hint>{_h(counted(len(g.destinations), 'destination'))}</span></th>"
            f"<td class=n>{human_bytes(g.bytes_sent)}</td><td class=n>{human_bytes(g.bytes_received)}</td>"
            f"<td class=n>{_num(g.connections)}</td><td>{_h(_blocked_text(g.blocked))}</td></tr>"]
    for d in g.destinations[:budget]:
        port = f":{d.port}" if d.port is not None else ""
        names = ", ".join(d.names[:3]) + (f" and {len(d.names) - 3} more" if len(d.names) > 3 else "")
        cells = [f"<td class=addr><code>{_h(d.address + port)}</code> {_h(d.proto)}</td>", f"<td>{_h(names) or '-'}</td>",
                 f"<td class=st>{_h(', '.join(d.processes)) or '-'}</td>"]
        if many:
            cells.append(f"<td>{_h(d.session)}</td>")
        cells += [f"<td class=n>{human_bytes(d.bytes_sent)}</td>", f"<td class=n>{human_bytes(d.bytes_received)}</td>",
                  f"<td class=n>{_num(d.connections)}</td>",
                  f"<td class='st {_status_class(d.status)}'>{_h(d.status)}</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def _blocked_text(n: int) -> str:
    return f"{n:,} blocked" if n else ""


def _destinations(r: Report) -> str:
    out = ["<section id=destinations><h2>What the job contacted</h2>"]
    if not r.domains:
        out.append("<p>conn.log has no connection to a destination outside the host.</p></section>")
        return "".join(out)
    total = sum(len(g.destinations) for g in r.domains)
    out.append(f"<p>{_h(counted(total, 'destination'))} in {_h(counted(len(r.domains), 'registered domain'))}, "
               "blocked first, then most data sent.</p>")
    head = ["Address", "Names", "Process"] + (["Session"] if r.multi_session else []) + ["Sent", "Received", "Connections", "Status"]
    rows, budget = [], MAX_DESTINATIONS
    for g in r.domains:
        if budget <= 0:
            break
        rows += _group_rows(g, r.multi_session, budget)
        budget -= len(g.destinations)
    out.append(_table(head, rows))
    if total > MAX_DESTINATIONS:
        out.append(f"<p class=hint>{_h(counted(total - MAX_DESTINATIONS, 'more destination'))} not listed "
                   "(--format json has every one).</p>")
    out.append("</section>")
    return "".join(out)


# ---- the timeline: one row per process, a bar per time bucket ----------------

LABEL_W, PLOT_W, ROW_H, AXIS_H = 230, 700, 24, 28


def _ticks(t: Timeline, n: int = 6) -> list[tuple[float, str]]:
    """About ``n`` evenly spaced (x, 'HH:MM' or 'HH:MM:SS') ticks: the hour always shown."""
    span = (t.end - t.start).total_seconds()
    fmt = "%H:%M:%S" if span < 600 else "%H:%M"
    if span >= 2 * 86400:
        fmt = "%m-%d %H:%M"
    out = []
    for k in range(n + 1):
        ts = t.start + (t.end - t.start) * (k / n)
        out.append((LABEL_W + PLOT_W * k / n, ts.strftime(fmt)))
    return out


def _timeline(r: Report) -> str:
    t = r.timeline
    out = ["<section id=timeline><h2>Network activity per process</h2>"]
    if not t.rows or t.start is None:
        out.append("<p>No connections in the logs.</p></section>")
        return "".join(out)
    n_buckets = len(t.rows[0].counts)
    bw = PLOT_W / n_buckets
    height = AXIS_H + ROW_H * len(t.rows)
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{LABEL_W + PLOT_W + 10}' height='{height}' "
           f"role='img' aria-label='connections per process over time'>"]
    for i, p in enumerate(t.rows):
        y = i * ROW_H
        label = p.process if len(p.process) <= 34 else p.process[:33] + "..."
        svg.append(f"<text x='4' y='{y + 15}'><title>{_h(p.process)}{_h(' / step ' + p.step) if p.step else ''}</title>"
                   f"{_h(label)}</text>")
        svg.append(f"<line x1='{LABEL_W}' x2='{LABEL_W + PLOT_W}' y1='{y + ROW_H - 2}' y2='{y + ROW_H - 2}' stroke='#d0d7de'/>")
        peak = max(p.counts) or 1  # each row to its own scale: a quiet process's bursts stay visible
        for b, (c, cb) in enumerate(zip(p.counts, p.blocked_counts)):
            if not c:
                continue
            h = max(2.0, (ROW_H - 6) * c / peak)
            x = LABEL_W + b * bw
            fill = "#cf222e" if cb else "#0969da"
            svg.append(f"<rect x='{x:.1f}' y='{y + ROW_H - 2 - h:.1f}' width='{max(bw - 1, 1):.1f}' height='{h:.1f}' "
                       f"fill='{fill}'><title>{c} ({cb} blocked)</title></rect>")
    axis_y = ROW_H * len(t.rows)
    for x, label in _ticks(t):
        svg.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='0' y2='{axis_y + 4}' stroke='#eaeef2'/>")
        anchor = "end" if x >= LABEL_W + PLOT_W - 1 else "middle"
        svg.append(f"<text x='{x:.1f}' y='{axis_y + 18}' text-anchor='{anchor}'>{_h(label)}</text>")
    svg.append("</svg>")
    out.append("".join(svg))
    out.append(f"<p class=hint>Connections per {_h(_bucket_text(t.bucket_seconds))}, UTC, blue allowed, red with a blocked "
               "attempt; each row's bars relative to that process's busiest moment (hover a bar for its count).</p>")
    summary_rows = [f"<tr><td>{_h(p.process)}</td><td>{_h(p.step or '-')}</td><td class=n>{_num(p.connections)}</td>"
                    f"<td class=n>{_num(p.blocked)}</td><td class=n>{human_bytes(p.bytes_sent)}</td></tr>" for p in t.rows]
    out.append(_table(["Process", "CI step", "Connections", "Blocked", "Sent"], summary_rows))
    out.append("</section>")
    return "".join(out)


def _bucket_text(seconds: float) -> str:
    from .findings import human_duration

    return human_duration(seconds) if seconds >= 0.001 else "bucket"


def render_page(r: Report, min_severity: str = "info") -> str:
    word = verdict_word(r)
    where = sessions_text(r) + (f", {time_range(r)}" if r.first_seen is not None else "")
    policy = f"Policy: {r.policy}" if r.policy else "No policy given"
    if r.baseline_sessions:
        policy += f"; against {counted(r.baseline_sessions, 'baseline session')}"
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>cicd-audit: {word}, {_h(where)}</title><style>{STYLE}</style></head><body>",
        f"<header class='verdict {word.lower()}'><h1>{word}</h1><p>{_h(verdict_line(r))}</p>"
        f"<p>{_h(where)}. {_h(policy)}.</p></header><main>",
        _metrics(r), _findings(r, min_severity), _timeline(r), _destinations(r),
        f"<footer class=hint><p>cicd-audit analyze; first activity {_h(ts_text(r.first_seen))}, "
        f"last {_h(ts_text(r.last_seen))}.</p></footer></main></body></html>\n",
    ]
    return "".join(parts)


