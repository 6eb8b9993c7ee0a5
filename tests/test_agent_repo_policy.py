"""The runner agent with a repository's own policy (`job start --repo-policy`), narrowing the admin's.

The admin allows a name and an address range; the repository's file allows
only the name. With `--repository-policies narrow` the job reaches the name
and not the range, and its job.json says which policy held.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from cicd_audit.lab import CICD_AUDIT, DNS_NAME, HTTP_PORT, OTHER_V4, V4, agent_ready

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

CURL = "curl -s -o /dev/null --max-time 5 -w %{http_code}"


def test_a_repository_policy_narrows_the_admins_for_its_job(lab, tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yml").write_text(f"allowed:\n  domains: [{DNS_NAME}]\n  cidrs: [{OTHER_V4}]\n")
    repo_policy = tmp_path / "egress.yml"
    repo_policy.write_text(f"allowed:\n  domains: [{DNS_NAME}]\n")
    out, sock = tmp_path / "sessions", tmp_path / "agent.sock"
    argv = [CICD_AUDIT, "agent", "--out", str(out), "--iface", lab.client_if, "--cgroup", str(lab.cgroup),
            "--socket", str(sock), "--policy-dir", str(policies), "--resolver", V4[1], "--no-analysis",
            "--repository-policies", "narrow"]
    proc = lab.popen(lab.client_ns, lab.in_cgroup(argv), stderr=subprocess.PIPE, text=True)
    try:
        agent_ready(proc.stderr)
        script = "; ".join([
            f"echo session $({CICD_AUDIT} job start --socket {sock} --join $$ --repo-policy {repo_policy})",
            f"echo allowed $({CURL} -4 http://{DNS_NAME}:{HTTP_PORT}/)",
            f"echo raw $({CURL} http://{OTHER_V4}:{HTTP_PORT}/)",
            f"{CICD_AUDIT} job end --socket {sock} >/dev/null",
        ])
        done = lab.run(lab.client_ns, lab.in_cgroup(["sh", "-c", script]), env=dict(os.environ))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert done.returncode == 0, done.stderr
    seen = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert (seen["allowed"], seen["raw"]) == ("200", "000"), (seen, done.stderr)
    meta = json.loads((Path(seen["session"]) / "job.json").read_text())
    assert meta["policy"] == f"{policies / 'default.yml'} narrowed by the repository's policy (job start --repo-policy)"
    assert "policy_note" not in meta
