"""The GitLab CI template (templates/gitlab/cicd-audit.gitlab-ci.yml), run as GitLab runs a job.

GitLab joins before_script and script into one shell script (bash -e -o
pipefail) and runs after_script in a shell of its own, with the job's
variables in the environment. Here that happens in the lab's client
namespace, `sudo` being a pass-through (the test runs as root).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from cicd_audit.lab import CICD_AUDIT, HTTP_PORT, OTHER_V4

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "gitlab" / "cicd-audit.gitlab-ci.yml"


def job_env(tmp_path: Path, lab, **variables: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "sudo").chmod(0o755)
    project = tmp_path / "project"
    project.mkdir()
    template = yaml.safe_load(TEMPLATE.read_text())[".cicd-audit"]
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(CICD_AUDIT).parent}:{os.environ['PATH']}",
           "CI_PROJECT_DIR": str(project), "CICD_AUDIT_ARGS": f"--iface {lab.client_if} --cgroup {lab.cgroup}"}
    for name, value in template["variables"].items():       # GitLab expands $VARS in variables
        env[name] = os.path.expandvars(value.replace("$CI_PROJECT_DIR", str(project)))
    env.update(variables)
    return env


def run_job(lab, env: dict, script: list[str]) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    template = yaml.safe_load(TEMPLATE.read_text())[".cicd-audit"]
    main = "\n".join([*template["before_script"], *script])
    after = "\n".join(template["after_script"])
    argv = ["nsenter", f"--net=/run/netns/{lab.client_ns}", "bash", "-e", "-o", "pipefail", "-c"]
    done = subprocess.run([*argv, main], env=env, capture_output=True, text=True, timeout=300)
    cleanup = subprocess.run([*argv, after], env=env, capture_output=True, text=True, timeout=300)
    return done, cleanup


CURL = f"curl -s -o /dev/null http://{OTHER_V4}:{HTTP_PORT}/"


def test_the_gate_fails_the_job_on_findings_and_the_session_is_kept(lab, tmp_path):
    env = job_env(tmp_path, lab, CICD_AUDIT_FAIL_ON="medium")
    done, after = run_job(lab, env, [CURL, "cicd-audit-gate"])
    assert done.returncode == 1, done.stdout + done.stderr      # a direct-to-IP connection: medium
    assert OTHER_V4 in done.stdout
    project = Path(env["CI_PROJECT_DIR"])
    assert (project / "cicd-audit" / "conn.log").exists()
    assert after.returncode == 0 and (project / "cicd-audit.md").read_text()
    assert lab.tc_filters() == ""


def test_without_the_gate_the_job_passes_and_after_script_stops_and_reports(lab, tmp_path):
    env = job_env(tmp_path, lab)
    done, after = run_job(lab, env, [CURL])
    assert done.returncode == 0, done.stderr
    assert after.returncode == 0, after.stderr
    project = Path(env["CI_PROJECT_DIR"])
    assert OTHER_V4 in (project / "cicd-audit.md").read_text()
    assert lab.tc_filters() == "", "after_script stopped the recorder"
