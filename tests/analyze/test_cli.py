"""`cicd-audit analyze` through click's CliRunner: formats, exit codes, errors (pure tier)."""

import gzip
import json
import shutil

import pytest
from click.testing import CliRunner

from cicd_audit.analyzers.cli import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, analyze
from cicd_audit.analyzers.findings import FINDING_COLUMNS, SEVERITIES


def run(*args):
    return CliRunner().invoke(analyze, [str(a) for a in args])


def test_help_lists_exit_codes_and_analyzers():
    r = run("--help")
    assert r.exit_code == 0
    for word in ["--policy", "--baseline", "--format", "--fail-on", "Exit status", "dns_tunnel", "direct_ip"]:
        assert word in r.output


def test_text_summary_then_findings(exfil_session, policy_file):
    r = run(exfil_session, "--policy", policy_file)
    assert r.exit_code == EXIT_CLEAN, r.output
    verdict, *lines = r.output.splitlines()
    assert verdict.startswith("PASS: no --fail-on given (")  # the verdict comes first
    assert lines[0].startswith("cicd-audit analyze: 1 session (ci-exfil)")
    assert "connections" in lines[1] and "allowed" in lines[1] and "unexpected" in lines[1] and "direct-to-IP" in lines[1]
    assert "DNS" in lines[2] and "registered domains" in lines[2]
    assert lines[3].split()[0] == "findings" and "high" in lines[3]
    assert any(ln.startswith("HIGH      dns_tunnel") or ln.startswith("HIGH      direct_ip") for ln in lines)
    assert len(lines) < 40  # a person takes it in at a glance


def test_json_schema(exfil_session, policy_file):
    r = run(exfil_session, "--policy", policy_file, "--format", "json")
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert set(doc) == {"findings", "summary"}
    assert doc["summary"]["schema_version"] == 1
    for key in ["connections", "unique_destinations", "allowed_destinations", "unexpected_destinations",
                "direct_ip_destinations", "dns_queries", "dns_names", "registered_domains", "findings_by_severity"]:
        assert key in doc["summary"], key
    assert doc["findings"]
    for f in doc["findings"]:
        assert list(f) == FINDING_COLUMNS
        assert f["severity"] in SEVERITIES
        assert isinstance(f["summary"], str) and f["summary"] and "\n" not in f["summary"]
        assert isinstance(f["evidence"], dict) and f["evidence"]
        assert f["sessions"] == ["ci-exfil"]
    ranks = [SEVERITIES.index(f["severity"]) for f in doc["findings"]]
    assert ranks == sorted(ranks, reverse=True)  # most severe first


def test_markdown_for_step_summary(exfil_session):
    r = run(exfil_session, "--format", "markdown")
    assert r.exit_code == 0
    assert r.output.startswith("## cicd-audit network audit")
    assert "| Severity | Analyzer | Indicator | Summary |" in r.output
    assert "`example.net`" in r.output


@pytest.mark.parametrize(
    "fail_on,code", [("critical", EXIT_CLEAN), ("high", EXIT_FINDINGS), ("low", EXIT_FINDINGS), ("info", EXIT_FINDINGS)]
)
def test_fail_on(exfil_session, fail_on, code):
    assert run(exfil_session, "--fail-on", fail_on).exit_code == code


def test_clean_session_exits_zero_with_fail_on(ci_session, policy_file):
    r = run(ci_session, "--policy", policy_file, "--fail-on", "info")
    assert r.exit_code == EXIT_CLEAN, r.output
    assert "findings     none" in r.output


def test_min_severity_hides_but_counts(exfil_session, policy_file):
    r = run(exfil_session, "--policy", policy_file, "--min-severity", "high")
    assert "LOW " not in r.output and "below high not shown" in r.output


def test_several_sessions_and_baseline(ci_session, ci_session_other_run, exfil_session):
    r = run(exfil_session, ci_session_other_run, "--baseline", ci_session, "--format", "json")
    doc = json.loads(r.output)
    assert doc["summary"]["sessions"] == ["ci-exfil", "ci-run-2"]
    assert doc["summary"]["baseline_sessions"] == 1
    assert {"new_destination", "dns_tunnel"} <= {f["analyzer"] for f in doc["findings"]}


def test_gzipped_and_json_logs(exfil_session, tmp_path):
    from cicd_audit.zeeklog.reader import read_log
    from cicd_audit.zeeklog.schema import load_schema
    from cicd_audit.zeeklog.writer import LogWriter

    gz = tmp_path / "gz"
    gz.mkdir()
    for name in ("conn", "dns"):
        with open(exfil_session / f"{name}.log", "rb") as src, gzip.open(gz / f"{name}.log.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    js = tmp_path / "js"
    js.mkdir()
    for name in ("conn", "dns"):
        _, rows = read_log(exfil_session / f"{name}.log")
        with LogWriter(js, load_schema(name), fmt="json", flush_interval=0) as w:
            for row in rows:
                w.write(row)
    base = json.loads(run(exfil_session, "--format", "json").output)["findings"]
    for d in (gz, js):
        got = json.loads(run(d, "--format", "json").output)["findings"]
        assert [(f["analyzer"], f["indicator"], f["severity"]) for f in got] == [
            (f["analyzer"], f["indicator"], f["severity"]) for f in base
        ]


# ---- usage and input errors: exit 2 with a one-line message ------------------


def test_missing_directory(tmp_path):
    r = run(tmp_path / "nope")
    assert r.exit_code == EXIT_ERROR and "does not exist" in r.output


def test_directory_without_logs(tmp_path):
    r = run(tmp_path)
    assert r.exit_code == EXIT_ERROR and "no conn.log or dns.log" in r.output


def test_malformed_log_names_file_and_line(exfil_session, tmp_path):
    d = tmp_path / "bad"
    shutil.copytree(exfil_session, d)
    lines = (d / "dns.log").read_text().splitlines(keepends=True)
    lines[12] = "this\tline\thas\tthe\twrong\tcolumns\n"
    (d / "dns.log").write_text("".join(lines))
    r = run(d)
    assert r.exit_code == EXIT_ERROR
    assert "dns.log, line 13" in r.output and "Traceback" not in r.output


def test_bad_policy(exfil_session, tmp_path):
    p = tmp_path / "p.yml"
    p.write_text("allowed:\n  domains: [*.x.org]\n")
    r = run(exfil_session, "--policy", p)
    assert r.exit_code == EXIT_ERROR
    assert "p.yml, line 2" in r.output and "must be quoted" in r.output
    r = run(exfil_session, "--policy", tmp_path / "missing.yml")
    assert r.exit_code == EXIT_ERROR and "no such file" in r.output


def test_bad_option_values(exfil_session):
    assert run(exfil_session, "--fail-on", "severe").exit_code == EXIT_ERROR
    assert run(exfil_session, "--format", "xml").exit_code == EXIT_ERROR
    assert run().exit_code == EXIT_ERROR


def test_analyze_imports_nothing_from_bcc():
    import subprocess
    import sys

    code = (
        "import sys, cicd_audit.analyzers, cicd_audit.analyzers.cli;"
        "sys.exit(1 if any(m == 'bcc' or m.startswith('bcc.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_own_services_file(exfil_session, tmp_path):
    # paste.example.org is in the exfil session; the packaged list does not know it
    assert "known_service" not in run(exfil_session, "--format", "json").output
    own = tmp_path / "services.yml"
    own.write_text("version: 2\ncategories:\n  paste:\n    - paste.example.org\n")
    r = run(exfil_session, "--format", "json", "--services", own)
    assert r.exit_code == 0, r.output
    found = [f for f in json.loads(r.output)["findings"] if f["analyzer"] == "known_service"]
    assert [f["indicator"] for f in found] == ["paste.example.org"] and found[0]["severity"] == "high"
    bad = tmp_path / "bad.yml"
    bad.write_text("categories: [oops]\n")
    r = run(exfil_session, "--services", bad)
    assert r.exit_code == 2 and "bad.yml" in r.output


def test_html_format_and_file(exfil_session, tmp_path):
    page = run(exfil_session, "--format", "html", "--fail-on", "high")
    assert page.exit_code == EXIT_FINDINGS and page.output.startswith("<!DOCTYPE html>")
    out = tmp_path / "audit.html"
    r = run(exfil_session, "--format", "markdown", "--html", out)
    assert r.exit_code == EXIT_CLEAN and r.output.startswith("## cicd-audit network audit")
    assert out.read_text() == run(exfil_session, "--format", "html").output  # the same report, either way


def test_html_errors(exfil_session, tmp_path):
    r = run(exfil_session, "--html", tmp_path / "no-such-dir" / "audit.html")
    assert r.exit_code == EXIT_ERROR and "cannot write" in r.output and "Traceback" not in r.output
    r = run("--store", tmp_path / "store", "--format", "html")
    assert r.exit_code == EXIT_ERROR and "HTML report is per session" in r.output


def test_an_error_exits_with_its_own_status_as_every_command_does(ci_session, monkeypatch):
    """2 for usage and input (above), 3 when the machine lacks something: the same statuses as `record`."""
    from cicd_audit.analyzers import analysis
    from cicd_audit.errors import EnvironmentProblem

    def lacking(*args, **kwargs):
        raise EnvironmentProblem("this machine lacks \x1b[31mit")

    monkeypatch.setattr(analysis, "analyze", lacking)
    r = run(ci_session)
    assert r.exit_code == 3 and "lacks" in r.output and "\x1b" not in r.output
