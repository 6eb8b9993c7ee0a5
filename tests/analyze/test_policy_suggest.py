"""`cicd-audit policy suggest`: the allowlist of audit runs, reviewed, then enforced.

The sessions are the analyzer tests' synthetic CI runs (conftest.ordinary_ci): a clean run, and the
same job with exfiltration on top. Replayed against the sessions it came from, the suggested policy
leaves no policy finding; what a finding flagged stays out of it.
"""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from cicd_audit.analyzers.analysis import analyze
from cicd_audit.cli import main
from cicd_audit.policy import parse_policy
from cicd_audit.policy_suggest import suggest_policy
from cicd_audit.zeeklog.reader import load_logs

POLICY_ANALYZERS = {"unexpected_destination", "direct_ip", "unexpected_lookup"}


def suggest(*sessions) -> str:
    r = CliRunner().invoke(main, ["policy", "suggest", *map(str, sessions)])
    assert r.exit_code == 0, r.output
    return r.stdout


def policy_findings(policy_text: str, *sessions):
    result = analyze(load_logs(*sessions), policy=parse_policy(policy_text, "suggested"))
    return result.findings[result.findings["analyzer"].isin(POLICY_ANALYZERS)]


def test_a_clean_runs_suggestion_allows_everything_it_did(ci_session, ci_session_other_run):
    text = suggest(ci_session, ci_session_other_run)
    assert policy_findings(text, ci_session, ci_session_other_run).empty
    allowed = yaml.safe_load(text)["allowed"]
    assert allowed["domains"], text


def test_what_a_finding_flagged_is_left_out_and_said_why(exfil_session):
    text = suggest(exfil_session)
    rules = yaml.safe_load(text)["allowed"]
    allowed_text = " ".join(rules["domains"] + rules["cidrs"])
    # The run's findings of medium and above: a DNS tunnel, and two addresses no DNS answer explains.
    flagged = {"example.net", "1.1.1.1", "198.51.100.23"}
    for indicator in flagged:
        assert indicator not in allowed_text
        assert any(line.startswith("#") and indicator in line for line in text.splitlines()), text
    # Under the suggested policy nothing else breaks it, and what was flagged is still reported.
    assert set(policy_findings(text, exfil_session)["indicator"]) <= flagged
    result = analyze(load_logs(exfil_session), policy=parse_policy(text, "suggested"))
    serious = result.findings[result.findings["severity"].isin(["medium", "high", "critical"])]
    assert flagged <= set(serious["indicator"]), serious


def test_names_under_one_domain_become_a_wildcard_and_rules_keep_their_ports(tmp_path, session_builder):
    b = session_builder["SessionBuilder"]()
    for name in ("ci.example.com", "api.example.com", "example.com"):
        b.lookup(name, "A", answers=["192.0.2.10"])
    b.connect("192.0.2.10", 443, orig_bytes=700, resp_bytes=100)
    b.connect("192.0.2.10", 8443, orig_bytes=700, resp_bytes=100)
    for bucket in ("builds-7f3a", "cache-19cd"):
        b.lookup(f"{bucket}.s3.amazonaws.com", "A", answers=[f"52.216.1.{len(bucket)}"])
        b.connect(f"52.216.1.{len(bucket)}", 443, orig_bytes=1000, resp_bytes=100)
    b.lookup("pypi.org", "A", answers=["151.101.0.223"])
    b.connect("151.101.0.223", 443, orig_bytes=500, resp_bytes=90000)
    b.connect("203.0.113.50", 8443, orig_bytes=100, resp_bytes=100)
    session = b.write(tmp_path / "s")
    text = suggest(session)
    rules = yaml.safe_load(text)["allowed"]
    assert {"example.com:443", "example.com:8443", "*.example.com:443", "*.example.com:8443",
            "pypi.org:443"} <= set(rules["domains"]), rules
    # Each bucket is a tenant of its own (a public suffix below s3.amazonaws.com): a wildcard would
    # allow every other tenant's bucket too, the classic place to send stolen data.
    assert {"builds-7f3a.s3.amazonaws.com:443", "cache-19cd.s3.amazonaws.com:443"} <= set(rules["domains"])
    assert not any("*.s3.amazonaws.com" in r for r in rules["domains"])
    # An address no DNS answer explains is a finding (direct_ip): left out, said why.
    assert rules["cidrs"] == [] and any(line.startswith("#") and "203.0.113.50" in line for line in text.splitlines())


@pytest.mark.parametrize("hostile", ["evil.example: {allowed: all}", "a.example\n  cidrs: [0.0.0.0/0]",
                                     "#x.example", "\x1b]0;pwned\x07.example", "*.example"])
def test_hostile_names_from_the_logs_cannot_change_the_policy(tmp_path, session_builder, hostile):
    b = session_builder["ordinary_ci"](session_builder["SessionBuilder"]())
    b.lookup(hostile, "A", answers=["192.0.2.77"])
    b.connect("192.0.2.77", 443, orig_bytes=10, resp_bytes=10)
    text = suggest_policy(load_logs(b.write(tmp_path / "s")), ["s"])
    policy = parse_policy(text, "suggested")          # it loads (suggest_policy checks it too)
    assert not any(str(c) in ("0.0.0.0/0", "::/0") for c in getattr(policy, "cidrs", []))
    assert "0.0.0.0/0" not in "".join(line.split("#")[0] for line in text.splitlines())
    assert "\x1b" not in text and "\x07" not in text
    assert all(not line.startswith("  cidrs: [0") for line in text.splitlines())


def test_a_directory_without_logs_is_one_clear_error(tmp_path):
    r = CliRunner().invoke(main, ["policy", "suggest", str(tmp_path)])
    assert r.exit_code == 2 and "no conn.log or dns.log" in r.stderr and "Traceback" not in r.output


def test_out_never_overwrites(ci_session, tmp_path):
    out = tmp_path / "egress.yml"
    out.write_text("keep me\n")
    r = CliRunner().invoke(main, ["policy", "suggest", str(ci_session), "--out", str(out)])
    assert r.exit_code == 2 and "exists already" in r.stderr
    assert out.read_text() == "keep me\n"
    fresh = tmp_path / "new.yml"
    assert CliRunner().invoke(main, ["policy", "suggest", str(ci_session), "--out", str(fresh)]).exit_code == 0
    assert parse_policy(fresh.read_text(), str(fresh))
