"""The runner agent rotating a long job's logs (--rotate-interval): rotated files beside the
current ones, each a whole Zeek log, and the job's analysis reads them all."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from cicd_audit.lab import CICD_AUDIT, DNS_NAME, V4, agent_ready
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

LOOKUPS = 5


def test_a_long_jobs_logs_rotate_and_its_analysis_reads_every_file(lab, tmp_path):
    out, sock = tmp_path / "sessions", tmp_path / "agent.sock"
    argv = [CICD_AUDIT, "agent", "--out", str(out), "--iface", lab.client_if, "--cgroup", str(lab.cgroup),
            "--socket", str(sock), "--rotate-interval", "1s"]
    proc = lab.popen(lab.client_ns, lab.in_cgroup(argv), stderr=subprocess.PIPE, text=True)
    try:
        agent_ready(proc.stderr)
        lookups = "; ".join([f"dig +short +tries=1 +time=2 @{V4[1]} {DNS_NAME} >/dev/null; sleep 1.3"] * LOOKUPS)
        script = (f"s=$({CICD_AUDIT} job start --socket {sock}); {lookups}; "
                  f"{CICD_AUDIT} job end --socket {sock} >/dev/null; echo $s")
        done = lab.run(lab.client_ns, lab.in_cgroup(["sh", "-c", script]))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert done.returncode == 0, done.stderr
    session = Path(done.stdout.strip())
    rotated = sorted(session.glob("dns.*.log"))
    assert len(rotated) >= 2, sorted(p.name for p in session.iterdir())
    rows = []
    for path in [*rotated, session / "dns.log"]:
        text = path.read_text()
        assert text.startswith("#separator") and "\n#close\t" in text, path.name   # each a whole Zeek log
        rows += [r["query"] for r in read_log(path)[1]]
    assert rows.count(DNS_NAME) == LOOKUPS
    summary = json.loads((session / "analysis.json").read_text())["summary"]
    assert summary["dns_queries"] == LOOKUPS
