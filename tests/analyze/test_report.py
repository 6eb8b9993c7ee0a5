"""The security report: one model (report_model), its wording, and its four renderings (pure tier)."""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from cicd_audit.analyzers import analyze, load_logs
from cicd_audit.analyzers.cli import EXIT_CLEAN, EXIT_FINDINGS
from cicd_audit.analyzers.cli import analyze as analyze_cmd
from cicd_audit.analyzers.findings import every
from cicd_audit.analyzers.report import render_html, render_markdown, render_text
from cicd_audit.analyzers.report_model import DIRECT_TO_IP, REPEATED_BLOCKED_ATTEMPTS, build_report
from cicd_audit.analyzers.report_wording import share
from cicd_audit.safe_text import for_html

from .report_sessions import BLOCKED_ADDRESS, CURL_TRIES, HOSTILE_NAMES, HOSTILE_PROCESS, HOSTILE_STEP, REFUSED_NAMES, blocked_job


def run(*args):
    return CliRunner().invoke(analyze_cmd, [str(a) for a in args])


@pytest.fixture(scope="module")
def blocked_session(session_builder, tmp_path_factory):
    return blocked_job(session_builder, tmp_path_factory.mktemp("report") / "blocked-job")


@pytest.fixture(scope="module")
def hostile_session(session_builder, tmp_path_factory):
    return blocked_job(session_builder, tmp_path_factory.mktemp("report") / "hostile-job", hostile=True)


def report_of(*dirs, fail_on=None):
    logs = load_logs(*dirs)
    result = analyze(logs, sessions=[d.name for d in dirs])
    return result, build_report(result, logs, fail_on=fail_on)


# ---- the model ---------------------------------------------------------------


def test_blocked_attempts_are_counted_and_attributed(blocked_session):
    result, r = report_of(blocked_session, fail_on="high")
    m = r.metrics
    assert m.blocked_attempts == CURL_TRIES and m.blocked_lookups == len(REFUSED_NAMES)
    assert m.allowed_attempts == m.connection_attempts - CURL_TRIES > 100
    assert r.verdict.blocked_attempts == CURL_TRIES + len(REFUSED_NAMES)
    assert CURL_TRIES >= REPEATED_BLOCKED_ATTEMPTS and m.repeated_attempts == 1  # curl kept trying
    assert m.unauthorized_access == 1  # the direct_ip finding on the refused address
    # the group of what was blocked comes first, with who tried
    first = r.domains[0]
    assert first.domain == DIRECT_TO_IP and first.blocked == CURL_TRIES
    (d,) = [d for d in first.destinations if d.address == BLOCKED_ADDRESS]
    assert d.status == "blocked" and d.processes == ("curl (pid 77)",) and d.connections == CURL_TRIES
    # findings carry process and step
    (f,) = [f for f in r.findings if f.indicator == BLOCKED_ADDRESS]
    assert f.processes == ("curl (pid 77)",) and f.steps == ("deploy",)


def test_timeline_accounts_for_every_connection(blocked_session):
    logs = load_logs(blocked_session)
    _, r = report_of(blocked_session)
    t = r.timeline
    assert sum(sum(p.counts) for p in t.rows) == len(logs.conn)
    curl = [p for p in t.rows if p.process == "curl (pid 77)"][0]
    assert curl.blocked == CURL_TRIES and sum(curl.blocked_counts) == CURL_TRIES and curl.step == "deploy"
    make = [p for p in t.rows if p.process == "make (pid 1000)"][0]
    assert make.blocked == 0 and make.connections > 400


def test_timeline_takes_a_missing_step_as_none_whatever_its_null():
    """Rows joined from sessions with and without steps carry NaN where a step is missing."""
    import pandas as pd

    from cicd_audit.analyzers.report_model import _timeline
    rows = pd.DataFrame({"ts": pd.to_datetime([1.0, 2.0, 3.0], unit="s", utc=True),
                         "process": ["make (pid 1)", "make (pid 1)", "curl (pid 2)"],
                         "blocked": [False, False, True], "orig_bytes": [1.0, 2.0, 3.0],
                         "step": ["build", float("nan"), None]})
    t = _timeline(rows)
    assert {p.process: p.step for p in t.rows} == {"make (pid 1)": "build", "curl (pid 2)": None}


def test_every_destination_is_listed_once(ci_session):
    logs = load_logs(ci_session)
    result, r = report_of(ci_session)
    ext = result.destinations[~result.destinations["resolver"] & ~result.destinations["local"]]
    listed = [(d.address, d.port) for g in r.domains for d in g.destinations]
    assert len(listed) == len(set(listed)) == len(ext)
    assert sum(g.connections for g in r.domains) == r.metrics.connection_attempts == int(ext["connections"].sum())
    assert r.metrics.unique_destinations == ext["address"].nunique()
    assert len(logs.conn) > r.metrics.connection_attempts  # the lookups and the service container's DNS are not attempts


# ---- wording -------------------------------------------------------------------

PLURAL_AFTER_ONE = re.compile(r"(?<![\d.,])1 (destinations|connections|attempts|findings|queries|sessions|addresses|names|"
                              r"registered domains|processes)\b")


def test_one_is_singular_everywhere(session_builder, tmp_path):
    b = session_builder["SessionBuilder"](seed=2)
    b.lookup("pypi.org", "A", answers=["151.101.64.223"])
    b.connect("151.101.64.223", 443)
    d = b.write(tmp_path / "tiny")
    result, r = report_of(d)
    assert r.metrics.connection_attempts == 1 and r.metrics.unique_destinations == 1
    text = render_text(result, report=r)
    assert "1 attempt to 1 destination (" in text and "Contacted: 1 registered domain," in text
    for out in (text, render_markdown(result, report=r), render_html(result, report=r)):
        assert not PLURAL_AFTER_ONE.search(out), PLURAL_AFTER_ONE.search(out).group(0)
        assert out is text or "1 attempt to 1 destination" in out


@pytest.mark.parametrize("part,whole,text", [(0, 10, "0%"), (1, 1000, "<1%"), (999, 1000, ">99%"), (5, 10, "50%"), (3, 0, "-")])
def test_share_never_rounds_to_a_lie(part, whole, text):
    assert share(part, whole) == text


# ---- the verdict: first, and the same as the exit status -------------------------


@pytest.mark.parametrize("fail_on,code,word", [("high", EXIT_FINDINGS, "FAIL"), ("critical", EXIT_CLEAN, "PASS")])
def test_verdict_first_and_matches_exit_status(exfil_session, fail_on, code, word):
    for fmt, first in (("text", 0), ("markdown", 2)):
        res = run(exfil_session, "--fail-on", fail_on, "--format", fmt)
        assert res.exit_code == code
        line = res.output.splitlines()[first]
        assert word in line and fail_on in line, line
    doc = json.loads(run(exfil_session, "--fail-on", fail_on, "--format", "json").output)
    assert doc["summary"]["report"]["verdict"]["passed"] is (code == EXIT_CLEAN)
    page = run(exfil_session, "--fail-on", fail_on, "--format", "html").output
    assert f"<h1>{word}</h1>" in page and page.index(f"<h1>{word}</h1>") < page.index("Key metrics")


def test_blocked_count_in_verdict(blocked_session):
    res = run(blocked_session, "--fail-on", "high")
    assert res.output.splitlines()[0] == "PASS: no finding at or above high (1 finding below it); 6 attempts blocked"
    assert "4 blocked (3%), and 2 DNS queries refused" in res.output


# ---- clean runs list what was contacted; several sessions have a session column -----


def test_clean_run_lists_what_the_job_contacted(ci_session):
    md = run(ci_session, "--format", "markdown").output
    assert "No findings. The job contacted" in md and "### What the job contacted" in md
    assert "`github.com`" in md and "| Domain | Addresses | Process |" in md
    assert "Session" not in md  # one session: no column for it
    assert "github.com" in run(ci_session).output


def test_several_sessions_get_a_session_column(exfil_session, ci_session_other_run):
    md = run(exfil_session, ci_session_other_run, "--format", "markdown").output
    assert "| Severity | Analyzer | Indicator | Summary | Process and step | Session |" in md
    assert "| Connections | Status | Session |" in md and "ci\\-run\\-2 |" in md
    page = run(exfil_session, ci_session_other_run, "--format", "html").output
    assert "<th>Session</th>" in page and "ci-run-2" in page
    assert "in ci-exfil" in run(exfil_session, ci_session_other_run).output


# ---- JSON: only added --------------------------------------------------------------


def test_json_adds_the_report(blocked_session):
    doc = json.loads(run(blocked_session, "--format", "json").output)
    rep = doc["summary"]["report"]
    assert set(rep) == {"verdict", "metrics", "domains", "timeline"}
    assert rep["metrics"]["blocked_attempts"] == CURL_TRIES and rep["metrics"]["blocked_share"] > 0
    dest = [d for g in rep["domains"] for d in g["destinations"] if d["address"] == BLOCKED_ADDRESS][0]
    assert dest["status"] == "blocked" and dest["processes"] == ["curl (pid 77)"]
    assert rep["timeline"]["processes"][0]["process"] == "make (pid 1000)"


# ---- HTML: self-contained, escaped -----------------------------------------------

#: Every element the page is made of: nothing that loads, embeds or runs anything.
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "main", "section", "table",
             "thead", "tbody", "tr", "th", "td", "code", "span", "details", "summary", "pre", "br", "svg", "text",
             "line", "rect", "footer"}
FETCHING_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "srcset", "poster", "data", "background"}


class Markup(HTMLParser):
    """The elements and attributes of a page as a browser's tokenizer sees them (text is not markup)."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.styles, self._in_style = [], [], [], False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def assert_inert(page: str):
    m = Markup(page)
    assert set(m.tags) <= PAGE_TAGS, set(m.tags) - PAGE_TAGS
    bad = [(t, k, v) for t, k, v in m.attrs if k in FETCHING_ATTRS or k.startswith("on") or k == "style"]
    assert not bad, bad
    assert not re.search(r"(?i)url\s*\(|@import", "".join(m.styles))


def test_inert_check_can_fail():
    for markup in ("<img src=x>", "<p onclick=x>", "<a href='https://x.test/'>", "<style>p{background:url(x)}</style>",
                   "<script>1</script>"):
        with pytest.raises(AssertionError):
            assert_inert(markup)


def test_html_page_is_self_contained_and_small(exfil_session, tmp_path):
    out = tmp_path / "report.html"
    res = run(exfil_session, "--html", out)
    assert res.exit_code == 0 and res.output.startswith("PASS")  # the terminal report still printed
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert_inert(page)
    assert "default-src 'none'" in page
    assert len(page.encode()) < 200_000
    for part in ("Key metrics", "Findings", "Network activity per process", "What the job contacted", "<svg"):
        assert part in page


def test_html_escapes_every_hostile_string(hostile_session):
    page = run(hostile_session, "--format", "html").output
    assert_inert(page)
    assert "<img" not in page and "<svg onload" not in page and "<b>" not in page and "\u202e" not in page
    assert for_html(HOSTILE_PROCESS) in page and for_html(HOSTILE_STEP) in page
    assert "\\u202egnp" in page  # the override shown, not obeyed
    for name in HOSTILE_NAMES:
        assert for_html(name) in page


@pytest.mark.parametrize("s,want", [
    ("<script>x</script>", "&lt;script&gt;x&lt;/script&gt;"),
    ("a\"b'c&d", "a&quot;b&#x27;c&amp;d"),
    ("ab\u202ecd", "ab\\u202ecd"),
    ("x\x1b[31my", "x\\x1b[31my"),
])
def test_for_html(s, want):
    assert for_html(s) == want


def test_report_builds_fast_on_the_ci_job(exfil_session):
    logs = load_logs(exfil_session)
    result = analyze(logs)
    t0 = time.perf_counter()
    build_report(result, logs, fail_on="high")
    # a fraction of the analysis itself (about 0.1 s here): the report must not be the slow part
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize("gap,text", [
    (19.7, "one query every 20 s"), (1.0, "one query every 1.0 s"), (0.8, "one query a second"),
    (0.025, "40 queries a second"), (0.0, "queries with no gap between them"), (300.0, "one query every 5 min"),
])
def test_rates_read_naturally(gap, text):
    assert every(gap, "query", "queries") == text


def test_no_finding_says_every_zero_seconds(session_builder, tmp_path):
    """A tunnel polling faster than every 0.05 s: the summary gives a rate, not 'every 0.0 s'."""
    import base64
    import random

    b = session_builder["SessionBuilder"](seed=4)
    t0 = b.t
    data = random.Random(2).randbytes(20 * 60)
    for i in range(60):
        label = base64.b32encode(data[20 * i: 20 * i + 20]).decode().rstrip("=").lower()
        b.lookup(f"{label}.q.fast-tunnel.test", "TXT", rcode=3, t=t0 + i * 0.02)
    result, _ = report_of(b.write(tmp_path / "fast"))
    (summary,) = result.findings[result.findings["analyzer"] == "dns_tunnel"]["summary"]
    assert "every 0.0 s" not in summary and "queries a second" in summary, summary


def test_markdown_names_the_processes_when_recorded(blocked_session, ci_session):
    md = run(blocked_session, "--format", "markdown").output
    assert "### Processes" in md
    (curl,) = [ln for ln in md.splitlines() if ln.startswith("| curl")]
    assert "| deploy | 4 | 4 | 0 B |" in curl
    assert "### Processes" not in run(ci_session, "--format", "markdown").output  # nothing to name: no table
