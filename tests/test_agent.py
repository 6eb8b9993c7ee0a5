"""The runner agent (recorder/agent/agent.py): one long-lived recorder, one session per job.

In the lab (cicd_audit.lab) the agent records the client namespace; a
simulated runner marks two jobs with `cicd-audit job start/end`, as its
job-started and job-completed hooks would, with traffic in each and between
them. Each session must hold exactly its job's rows, its identity and its
analysis; nothing between jobs is written; an unprivileged user cannot drive
the agent; a stopped agent leaves nothing attached.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cicd_audit.lab import CICD_AUDIT, DNS_NAME, HTTP_PORT, OTHER_V4, V4, agent_ready
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

CURL = ["curl", "-s", "-o", "/dev/null", "--max-time", "5", "-w", "%{http_code}"]


class RunningAgent:
    def __init__(self, lab, out: Path, sock: Path, *options: str) -> None:
        self.lab, self.out, self.sock = lab, out, sock
        argv = [CICD_AUDIT, "agent", "--out", str(out), "--iface", lab.client_if, "--cgroup", str(lab.cgroup),
                "--socket", str(sock), *options]
        self.proc = lab.popen(lab.client_ns, lab.in_cgroup(argv), stderr=subprocess.PIPE, text=True)
        try:
            self.said = agent_ready(self.proc.stderr)[:-1]     # what it said before it was ready
        except RuntimeError:
            self.proc.kill()
            raise

    def job(self, *args: str, env: dict | None = None, user: str | None = None) -> subprocess.CompletedProcess:
        argv = [CICD_AUDIT, "job", *args, "--socket", str(self.sock)]
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})

    def traffic(self, argv: list[str], env: dict | None = None) -> str:
        return self.lab.run(self.lab.client_ns, self.lab.in_cgroup(argv), env={**os.environ, **(env or {})}).stdout

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


def rows(session: Path, name: str) -> list[dict]:
    return list(read_log(session / f"{name}.log")[1])


def web_peers(session: Path) -> set[str]:
    return {c["id.resp_h"] for c in rows(session, "conn") if c["id.resp_p"] == HTTP_PORT}


def test_two_jobs_two_sessions_each_with_its_own_rows_identity_and_analysis(lab, tmp_path):
    out, sock = tmp_path / "sessions", tmp_path / "agent.sock"
    agent = RunningAgent(lab, out, sock)
    try:
        github = {"GITHUB_REPOSITORY": "org/app", "GITHUB_WORKFLOW": "ci", "GITHUB_RUN_ID": "77",
                  "GITHUB_JOB": "build", "RUNNER_NAME": "runner-1"}
        started = agent.job("start", "--label", "step=all", env=github)
        assert started.returncode == 0, started.stderr
        first = Path(started.stdout.strip())
        # A step's process that lives on after its request (the agent reads /proc while it runs).
        step = {"GITHUB_ACTION": "__actions_fetch", "GITHUB_ACTION_REPOSITORY": "actions/fetch", "GITHUB_ACTION_REF": "v1"}
        fetch = (f"import time, urllib.request; print(urllib.request.urlopen('http://{V4[1]}:{HTTP_PORT}/').status);"
                 "time.sleep(1)")
        assert agent.traffic([sys.executable, "-c", fetch], env=step).strip() == "200"
        ended = agent.job("end")
        assert ended.returncode == 0, ended.stderr
        assert Path(ended.stdout.strip()) == first

        assert agent.traffic([*CURL, f"http://[fd00:ca::5]:{HTTP_PORT}/"]) == "200"    # between jobs

        started = agent.job("start", env={"CI_PROJECT_PATH": "group/lib", "CI_JOB_ID": "9", "CI_JOB_NAME": "test"})
        assert started.returncode == 0, started.stderr
        second = Path(started.stdout.strip())
        assert agent.traffic([*CURL, f"http://{OTHER_V4}:{HTTP_PORT}/"]) == "200"
        status = json.loads(agent.job("status").stdout)
        assert status["job"] == str(second) and status["jobs_started"] == 2 and status["events_outside_jobs"] >= 1
        assert agent.job("end").returncode == 0
    finally:
        code, err = agent.stop()
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted([first.name, second.name])
    assert first.parent == out and second.parent == out

    assert web_peers(first) == {V4[1]}, "the first session holds exactly the first job's connections"
    web = [c for c in rows(first, "conn") if c["id.resp_p"] == HTTP_PORT]
    assert {(c["proc.exe"], c["proc.step"]) for c in web} == {(os.path.realpath(sys.executable),
                                                                "__actions_fetch (actions/fetch@v1)")}
    assert web_peers(second) == {OTHER_V4}, "the second session holds exactly the second job's connections"
    assert not any(r["id.resp_h"] == "fd00:ca::5" for s in (first, second) for r in rows(s, "conn"))

    meta = json.loads((first / "job.json").read_text())
    assert meta["job"] == {"repository": "org/app", "workflow": "ci", "run_id": "77", "job": "build",
                           "runner": "runner-1", "step": "all"}
    assert meta["status"] == "complete" and meta["start"] < meta["end"]
    assert json.loads((second / "job.json").read_text())["job"] == {"repository": "group/lib", "job_id": "9",
                                                                   "job": "test"}
    for session in (first, second):
        analysis = json.loads((session / "analysis.json").read_text())
        assert analysis["summary"]["connections"] >= 1, analysis["summary"]
        assert (session / "summary.md").read_text().strip()
        assert (session / "capture_stats.log").exists() and (session / "recorder.status").exists()
    assert lab.tc_filters() == "", "the stopped agent left programs attached"
    assert not sock.exists()


# A DNS query with two questions, sent to the lab's resolver (its answer, if any, is not waited for long).
TWO_QUESTIONS = f"""
import socket, struct
query = struct.pack("!6H", 0x1234, 0x0100, 2, 0, 0, 0)
for label in (b"a", b"b"):
    query += bytes([len(label)]) + label + b"\\x07example\\x04test\\x00" + struct.pack("!2H", 1, 1)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(1)
    s.sendto(query, ("{V4[1]}", 53))
    try:
        s.recv(512)
    except OSError:
        pass
"""


def test_the_agents_redefs_reach_each_sessions_dns_analyzer(lab, tmp_path):
    """`agent --redef dns_max_queries=1`: a query of two questions is past Zeek's limit in the job's
    session (by default the limit is 25, and the same query is logged without a weird)."""
    out, sock = tmp_path / "sessions", tmp_path / "agent.sock"
    agent = RunningAgent(lab, out, sock, "--redef", "dns_max_queries=1")
    try:
        started = agent.job("start")
        assert started.returncode == 0, started.stderr
        session = Path(started.stdout.strip())
        agent.traffic([sys.executable, "-c", TWO_QUESTIONS])
        assert agent.job("end").returncode == 0
    finally:
        code, err = agent.stop()
    assert code == 0, err
    assert "DNS_Conn_count_too_large" in [w["name"] for w in rows(session, "weird")]
    assert any(c["id.resp_p"] == 53 and "X" in c["history"] for c in rows(session, "conn"))


def test_an_open_job_is_ended_when_the_agent_stops_or_a_new_job_starts(lab, tmp_path):
    out, sock = tmp_path / "sessions", tmp_path / "agent.sock"
    agent = RunningAgent(lab, out, sock)
    try:
        first = Path(agent.job("start").stdout.strip())
        second_start = agent.job("start")
        second = Path(second_start.stdout.strip())
        assert agent.traffic([*CURL, f"http://{V4[1]}:{HTTP_PORT}/"]) == "200"
        assert agent.job("end").returncode == 0
        again = agent.job("end")
        assert again.returncode == 2 and "no job is open" in again.stderr
        third = Path(agent.job("start").stdout.strip())
    finally:
        code, err = agent.stop()
    assert code == 0, err
    assert json.loads((first / "job.json").read_text())["status"].startswith("superseded")
    assert json.loads((second / "job.json").read_text())["status"] == "complete"
    assert json.loads((third / "job.json").read_text())["status"].startswith("interrupted")
    assert web_peers(second) == {V4[1]} and web_peers(first) == set()


def test_only_root_or_the_socket_group_drives_the_agent(lab, tmp_path):
    out, sock = tmp_path / "sessions", tmp_path / "agent.sock"
    tmp_path.chmod(0o755)
    agent = RunningAgent(lab, out, sock)
    try:
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        refused = agent.job("start", user="65534")
        assert refused.returncode == 3 and "permission denied" in refused.stderr, refused.stderr
        assert json.loads(agent.job("status").stdout)["jobs_started"] == 0
    finally:
        code, err = agent.stop()
    assert code == 0, err
    assert list(out.iterdir()) == []


def test_a_second_agent_on_the_same_socket_is_refused(lab, tmp_path):
    sock = tmp_path / "agent.sock"
    agent = RunningAgent(lab, tmp_path / "a", sock)
    try:
        argv = [CICD_AUDIT, "agent", "--out", str(tmp_path / "b"), "--iface", lab.client_if,
                "--cgroup", str(lab.cgroup), "--socket", str(sock)]
        second = lab.run(lab.client_ns, lab.in_cgroup(argv), timeout=60)
        assert second.returncode == 2 and "already listening" in second.stderr, second.stderr
        assert json.loads(agent.job("status").stdout)["jobs_started"] == 0     # the first one still answers
    finally:
        code, err = agent.stop()
    assert code == 0, err



def test_github_hook_scripts_record_a_job_and_write_its_step_summary(lab, tmp_path):
    """The scripts `job install-hooks github` installs, run as the runner runs them: the job's
    session opens and closes, and its summary lands in the job's step summary."""
    from click.testing import CliRunner

    from cicd_audit.cli import main
    runner_dir = tmp_path / "runner"
    runner_dir.mkdir()
    sock = tmp_path / "agent.sock"
    assert CliRunner().invoke(main, ["job", "install-hooks", "github", str(runner_dir), "--socket", str(sock)]).exit_code == 0
    env = dict(line.split("=", 1) for line in (runner_dir / ".env").read_text().splitlines())
    summary = tmp_path / "step_summary.md"
    hook_env = {**os.environ, "PATH": f"{Path(CICD_AUDIT).parent}:{os.environ['PATH']}", "CICD_AUDIT_SOCKET": str(sock),
                "GITHUB_REPOSITORY": "org/app", "GITHUB_JOB": "build", "GITHUB_STEP_SUMMARY": str(summary)}
    agent = RunningAgent(lab, tmp_path / "sessions", sock)
    try:
        started = subprocess.run([env["ACTIONS_RUNNER_HOOK_JOB_STARTED"]], capture_output=True, text=True, env=hook_env)
        assert started.returncode == 0 and "recording this job's network activity" in started.stdout, started
        assert agent.traffic([*CURL, f"http://{V4[1]}:{HTTP_PORT}/"]) == "200"
        done = subprocess.run([env["ACTIONS_RUNNER_HOOK_JOB_COMPLETED"]], capture_output=True, text=True, env=hook_env)
        assert done.returncode == 0, done
    finally:
        code, err = agent.stop()
    assert code == 0, err
    session = Path(done.stdout.strip().rsplit(" ", 1)[1])
    assert json.loads((session / "job.json").read_text())["job"] == {"repository": "org/app", "job": "build"}
    assert summary.read_text() == (session / "summary.md").read_text() != ""


def test_hook_scripts_never_fail_the_job_when_no_agent_runs(tmp_path):
    from click.testing import CliRunner

    from cicd_audit.cli import main
    assert CliRunner().invoke(main, ["job", "install-hooks", "github", str(tmp_path)]).exit_code == 0
    env = {**os.environ, "PATH": f"{Path(CICD_AUDIT).parent}:{os.environ['PATH']}",
           "CICD_AUDIT_SOCKET": str(tmp_path / "nobody.sock")}
    for script in ("job-started.sh", "job-completed.sh"):
        r = subprocess.run([str(tmp_path / "cicd-audit-hooks" / script)], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r


def test_an_agent_with_a_policy_directory_blocks_each_job_by_its_own_policy(lab, tmp_path):
    """Jobs of two repositories, each blocked by its policy (read at its start); the runner's
    listener beside them, polling every 100 ms, never fails; a job started without --join is
    recorded but not blocked, and says so."""
    from test_job_scope import Agent as RunnerListener

    policies = tmp_path / "policies"
    (policies / "repos" / "org").mkdir(parents=True)
    (policies / "default.yml").write_text(f"allowed:\n  domains: [{DNS_NAME}]\n")
    (policies / "repos" / "org" / "open.yml").write_text(f"allowed:\n  domains: [{DNS_NAME}]\n  cidrs: [{OTHER_V4}]\n")
    out, sock = tmp_path / "sessions", tmp_path / "agent.sock"
    argv = [CICD_AUDIT, "agent", "--out", str(out), "--iface", lab.client_if, "--cgroup", str(lab.cgroup),
            "--socket", str(sock), "--policy-dir", str(policies), "--resolver", V4[1], "--no-analysis"]
    proc = lab.popen(lab.client_ns, lab.in_cgroup(argv), stderr=subprocess.PIPE, text=True)
    agent_ready(proc.stderr)
    listener = RunnerListener(lab.cmd(lab.client_ns, lab.in_cgroup([])), tmp_path / "stop")

    def job(repository: str, join: bool = True) -> dict[str, str]:
        start = f"{CICD_AUDIT} job start --socket {sock}" + (" --join $$" if join else "")
        script = "; ".join([
            f"echo session $({start})",
            "sleep 0.3",        # the listener (a check every 100 ms) checks while each job is blocked
            f"echo allowed $({' '.join(CURL)} -4 http://{DNS_NAME}:{HTTP_PORT}/)",
            f"echo raw $({' '.join(CURL)} http://{OTHER_V4}:{HTTP_PORT}/)",
            "echo unlisted $(dig +tries=1 +time=1 control.example.test | grep -oE 'status: [A-Z]+')",
            f"{CICD_AUDIT} job end --socket {sock} >/dev/null",
        ])
        done = lab.run(lab.client_ns, lab.in_cgroup(["sh", "-c", script]), env={**os.environ, "GITHUB_REPOSITORY": repository})
        assert done.returncode == 0, done.stderr
        seen = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
        seen["stderr"] = done.stderr
        return seen

    try:
        strict, opened, unjoined = job("org/app"), job("org/open"), job("org/app", join=False)
    finally:
        ok, failures = listener.stop()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (strict["allowed"], strict["raw"], strict["unlisted"]) == ("200", "000", "status: NXDOMAIN"), strict
    assert (opened["allowed"], opened["raw"], opened["unlisted"]) == ("200", "200", "status: NXDOMAIN"), opened
    assert (unjoined["raw"], unjoined["unlisted"]) == ("200", "status: NOERROR"), unjoined
    assert "not blocked" in unjoined["stderr"]
    # Checked all through the three jobs: at least twice in each one's pause, whatever the machine's speed.
    assert failures == [] and ok >= 6, (ok, failures)

    first, second, third = (Path(j["session"]) for j in (strict, opened, unjoined))
    assert json.loads((first / "job.json").read_text())["policy"] == str(policies / "default.yml")
    assert json.loads((second / "job.json").read_text())["policy"] == str(policies / "repos" / "org" / "open.yml")
    assert "not_blocked" in json.loads((third / "job.json").read_text())
    notes = [n["note"] for n in rows(first, "notice")]
    assert "CicdAudit::Blocked_Connection" in notes and "CicdAudit::Blocked_DNS_Query" in notes
    assert not list(lab.cgroup.glob("cicd-audit-job-*")), "a job's cgroup was left behind"


def test_a_restarted_agent_marks_the_session_a_killed_one_left_open(lab, tmp_path):
    out, sock = tmp_path / "sessions", tmp_path / "agent.sock"
    agent = RunningAgent(lab, out, sock)
    open_session = Path(agent.job("start").stdout.strip())
    agent.proc.kill()
    agent.proc.wait(30)
    assert lab.tc_filters() == "", "a killed agent leaves nothing attached (links die with it)"
    again = RunningAgent(lab, out, sock)                  # the stale socket is replaced
    assert any("marked interrupted" in line for line in again.said), again.said
    try:
        assert json.loads(again.job("status").stdout)["jobs_started"] == 0
        assert again.job("end").returncode == 2            # the old job is not the new agent's
    finally:
        code, err = again.stop()
    assert code == 0, err
    meta = json.loads((open_session / "job.json").read_text())
    assert meta["status"].startswith("interrupted")
    assert (open_session / "conn.log").exists()


def test_two_runners_on_one_host_each_job_in_its_own_session_at_the_same_time(lab, tmp_path):
    """Two runner services, each in a cgroup of its own (as systemd gives each runner unit),
    share one agent. Their jobs overlap: each session holds exactly its job's connections and
    lookups, each `job end` ends its own runner's job, and a job that ends first leaves the
    other's connections running."""
    from cicd_audit.lab.cgroups import in_cgroup

    out, sock = tmp_path / "sessions", tmp_path / "agent.sock"
    runners = {name: lab.cgroup / name for name in ("runner-a", "runner-b")}
    for cgroup in runners.values():
        cgroup.mkdir()
    agent = RunningAgent(lab, out, sock)

    def hook(runner: str, *args: str) -> subprocess.CompletedProcess:
        argv = in_cgroup(runners[runner], [CICD_AUDIT, "job", *args, "--socket", str(sock)])
        return subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "RUNNER_NAME": runner, "GITHUB_REPOSITORY": f"org/{runner}"})

    def step(runner: str, command: str) -> str:
        return lab.run(lab.client_ns, in_cgroup(runners[runner], ["sh", "-c", command])).stdout

    def fetch(address: str) -> str:
        return " ".join(CURL) + f" http://{address}:{HTTP_PORT}/"
    try:
        a = hook("runner-a", "start")
        assert a.returncode == 0, a.stderr
        b = hook("runner-b", "start")
        assert b.returncode == 0, b.stderr
        session_a, session_b = Path(a.stdout.strip()), Path(b.stdout.strip())
        assert session_a != session_b
        status = json.loads(hook("runner-b", "status").stdout)
        assert status["job"] == str(session_b) and set(status["jobs"]) == {"runner-a", "runner-b"}

        # b keeps a connection open across a's end: it must stay b's, whole.
        slow = lab.popen(lab.client_ns, in_cgroup(runners["runner-b"], [
            sys.executable, "-c", f"import socket, time; s = socket.create_connection(('{OTHER_V4}', {HTTP_PORT}));"
                                  "time.sleep(3); s.close()"]))
        assert step("runner-a", fetch(V4[1]) + f"; dig +short +tries=1 +time=2 @{V4[1]} a.{DNS_NAME}") \
            .startswith("200")
        assert step("runner-b", fetch(OTHER_V4) + f"; dig +short +tries=1 +time=2 @{V4[1]} b.{DNS_NAME}") \
            .startswith("200")
        either = agent.job("end")                      # no runner named, two jobs open: refused
        assert either.returncode == 2 and "name the runner" in either.stderr, either.stderr
        ended = hook("runner-a", "end")
        assert ended.returncode == 0, ended.stderr
        assert Path(ended.stdout.strip()) == session_a
        assert slow.wait(timeout=30) == 0
        assert step("runner-b", fetch(OTHER_V4)).startswith("200")
        ended = hook("runner-b", "end")
        assert ended.returncode == 0, ended.stderr
        assert Path(ended.stdout.strip()) == session_b
    finally:
        code, err = agent.stop()
    assert code == 0, err

    assert web_peers(session_a) == {V4[1]}
    assert web_peers(session_b) == {OTHER_V4}
    assert {r["query"] for r in rows(session_a, "dns")} == {f"a.{DNS_NAME}"}
    assert {r["query"] for r in rows(session_b, "dns")} == {f"b.{DNS_NAME}"}
    held = [c for c in rows(session_b, "conn") if c["id.resp_p"] == HTTP_PORT and c["duration"] is not None
            and c["duration"] >= 2.5]
    assert len(held) == 1 and held[0]["history"].startswith("Sh"), "b's open connection was cut at a's end"
    for session, runner in ((session_a, "runner-a"), (session_b, "runner-b")):
        meta = json.loads((session / "job.json").read_text())
        assert meta["job"]["runner"] == runner and meta["status"] == "complete"


def test_two_runners_blocked_at_once_each_job_by_its_own_policy(lab, tmp_path):
    """Runner a's job (org/app: the default policy, DNS_NAME only) and runner b's (org/open: also
    OTHER_V4) are blocked at the same time. b reaches OTHER_V4 while a, before and after, is
    refused it; b's unlisted lookup is refused too; b's end leaves a blocked by a's policy."""
    from cicd_audit.lab.cgroups import in_cgroup

    policies = tmp_path / "policies"
    (policies / "repos" / "org").mkdir(parents=True)
    (policies / "default.yml").write_text(f"allowed:\n  domains: [{DNS_NAME}]\n")
    (policies / "repos" / "org" / "open.yml").write_text(f"allowed:\n  domains: [{DNS_NAME}]\n  cidrs: [{OTHER_V4}]\n")
    out, sock, go = tmp_path / "sessions", tmp_path / "agent.sock", tmp_path / "go"
    runners = {name: lab.cgroup / name for name in ("runner-a", "runner-b")}
    for cgroup in runners.values():
        cgroup.mkdir()
    argv = [CICD_AUDIT, "agent", "--out", str(out), "--iface", lab.client_if, "--cgroup", str(lab.cgroup),
            "--socket", str(sock), "--policy-dir", str(policies), "--resolver", V4[1], "--no-analysis"]
    proc = lab.popen(lab.client_ns, lab.in_cgroup(argv), stderr=subprocess.PIPE, text=True)
    agent_ready(proc.stderr)
    raw = f"{' '.join(CURL)} http://{OTHER_V4}:{HTTP_PORT}/"
    allowed = f"{' '.join(CURL)} -4 http://{DNS_NAME}:{HTTP_PORT}/"
    unlisted = "dig +tries=1 +time=1 control.example.test | grep -oE 'status: [A-Z]+'"
    job = f"{CICD_AUDIT} job start --socket {sock} --join $$"
    try:
        a = lab.popen(lab.client_ns, in_cgroup(runners["runner-a"], ["sh", "-c", "; ".join([
            f"echo session $({job})", f"echo before $({raw})",
            f"while [ ! -e {go} ]; do sleep 0.1; done", f"echo after $({raw}) $({allowed})",
            f"{CICD_AUDIT} job end --socket {sock} >/dev/null"])]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RUNNER_NAME": "runner-a", "GITHUB_REPOSITORY": "org/app"})
        first = [a.stdout.readline().strip() for _ in range(2)]
        b = lab.run(lab.client_ns, in_cgroup(runners["runner-b"], ["sh", "-c", "; ".join([
            f"echo session $({job})", f"echo raw $({raw})", f"echo unlisted $({unlisted})",
            f"{CICD_AUDIT} job end --socket {sock} >/dev/null"])]),
            env={**os.environ, "RUNNER_NAME": "runner-b", "GITHUB_REPOSITORY": "org/open"})
        go.touch()
        rest, a_err = a.communicate(timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert first[1] == "before 000" and rest.strip() == "after 000 200", (first, rest, a_err)
    assert b.returncode == 0 and "raw 200" in b.stdout and "unlisted status: NXDOMAIN" in b.stdout, \
        (b.stdout, b.stderr)
    assert "not blocked" not in b.stderr + a_err, (b.stderr, a_err)
    session_a = Path(first[0].split(" ", 1)[1])
    session_b = Path(next(line for line in b.stdout.splitlines() if line.startswith("session ")).split(" ", 1)[1])
    meta_a, meta_b = (json.loads((s / "job.json").read_text()) for s in (session_a, session_b))
    assert meta_a["policy"] == str(policies / "default.yml")
    assert meta_b["policy"] == str(policies / "repos" / "org" / "open.yml")
    assert "not_blocked" not in meta_a and "not_blocked" not in meta_b
    assert {n["note"] for n in rows(session_a, "notice")} == {"CicdAudit::Blocked_Connection"}
    assert {n["note"] for n in rows(session_b, "notice")} == {"CicdAudit::Blocked_DNS_Query"}
    assert web_peers(session_b) == {OTHER_V4}
    assert not list(lab.cgroup.glob("**/cicd-audit-job-*")), "a job's cgroup was left behind"
