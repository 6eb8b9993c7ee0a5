"""Findings name the CI job (issue 14, "who did it"): the identity in a session's job.json (pure tier)."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from cicd_audit.analyzers.cli import analyze
from cicd_audit.analyzers.jobs import describe

AGENT_JOB = {"job": {"repository": "acme/api", "workflow": "ci.yml", "job": "build", "run_id": "9876543",
                     "run_attempt": "2", "runner": "runner-17"},
             "session": "20261205T101500Z-job3", "start": 1.0, "end": 2.0, "status": "complete"}


def _json(*args) -> dict:
    out = CliRunner().invoke(analyze, [*map(str, args), "--format", "json"])
    assert out.exit_code in (0, 1), out.output
    return json.loads(out.output)


def _copy(src, dst, job=None):
    shutil.copytree(src, dst)
    if job is not None:
        (dst / "job.json").write_text(json.dumps(job))
    return dst


def test_every_finding_of_an_agent_session_names_its_job(exfil_session, tmp_path):
    session = _copy(exfil_session, tmp_path / "s", AGENT_JOB)
    findings = _json(session)["findings"]
    assert findings
    for f in findings:
        assert f["evidence"]["jobs"] == [{"session": "s", **AGENT_JOB["job"]}]
        assert f["summary"].endswith("in job acme/api ci.yml/build run 9876543.2")


def test_with_several_sessions_each_finding_names_the_jobs_of_its_own_sessions(exfil_session, ci_session, tmp_path):
    bad = _copy(exfil_session, tmp_path / "bad", AGENT_JOB)
    other_job = {"job": {"repository": "acme/web", "workflow": "ci.yml", "job": "test", "run_id": "5"}}
    clean = _copy(ci_session, tmp_path / "clean", other_job)
    findings = _json(bad, clean)["findings"]
    tunnel = [f for f in findings if f["indicator"] == "example.net"]
    assert tunnel, [f["indicator"] for f in findings]
    for f in tunnel:
        assert [j["repository"] for j in f["evidence"]["jobs"]] == ["acme/api"]


def test_a_hand_written_job_json_is_read_too(exfil_session, tmp_path):
    session = _copy(exfil_session, tmp_path / "s", {"repository": "acme/api", "workflow": "nightly", "run_id": 7})
    f = _json(session)["findings"][0]
    assert f["evidence"]["jobs"] == [{"session": "s", "repository": "acme/api", "workflow": "nightly", "run_id": "7"}]
    assert f["summary"].endswith("in job acme/api nightly run 7")


def test_without_job_json_findings_are_unchanged(exfil_session, tmp_path):
    findings = _json(_copy(exfil_session, tmp_path / "s"))["findings"]
    assert findings and not any("jobs" in f["evidence"] or " in job " in f["summary"] for f in findings)


def test_a_broken_job_json_is_an_input_error_naming_it(exfil_session, tmp_path):
    session = _copy(exfil_session, tmp_path / "s")
    (session / "job.json").write_text("[1, 2")
    out = CliRunner().invoke(analyze, [str(session)])
    assert out.exit_code == 2 and "job.json" in out.output and "Traceback" not in out.output


def test_a_hostile_identity_is_neutralized_in_the_reports(exfil_session, tmp_path):
    job = {"job": {"repository": "acme/api", "workflow": "ci.yml", "job": "[x](https://evil.test) ![i](https://evil.test/p.png)"}}
    session = _copy(exfil_session, tmp_path / "s", job)
    md = CliRunner().invoke(analyze, [str(session), "--format", "markdown"]).output
    assert "](https://evil.test" not in md
    job["job"]["job"] = "build\x1b]0;owned\x07"
    (session / "job.json").write_text(json.dumps(job))
    text = CliRunner().invoke(analyze, [str(session)]).output
    assert "\x1b" not in text and "\x07" not in text


def test_describe_says_what_the_identity_has():
    assert describe({"repository": "acme/api"}) == "acme/api"
    assert describe({"workflow": "ci.yml", "job_id": "12"}) == "ci.yml job id 12"
    assert describe({"runner": "r1"}) == "r1"
