"""The agent's container image (deploy/container): built with podman from a Debian base made of
Debian's packages (no image registry is reachable), then run as a pod runs it: the agent's
container and a "runner" container sharing one network namespace (the lab's client namespace),
the runner's job traffic going to a server in the lab's other namespace.

The image carries neither a compiler nor kernel headers: it loads the bytecode `prepare --prebuilt`
compiled on this machine. Offline: scripts/install.sh --test made the base image and the wheelhouse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cicd_audit.lab import CICD_AUDIT, HTTP_PORT, V4, agent_ready
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/cicd-audit-base:bookworm"
WHEELHOUSE = Path("/var/cache/cicd-audit/wheelhouse")
# crun refuses hybrid cgroup layouts (v1 controllers with v2 beside them, as here and on Ubuntu 20.04,
# Amazon Linux 2, RHEL 8); runc runs there. The VM's hard open-files limit is below podman's default.
RUN_OPTIONS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {r.stderr[-2000:]}")
    return r


@pytest.fixture(scope="module")
def image():
    for tool in ("podman", "runc"):
        assert shutil.which(tool), f"{tool} is missing: scripts/install.sh --test installs it"
    assert podman("image", "exists", BASE_IMAGE, check=False).returncode == 0, \
        f"{BASE_IMAGE} is missing: scripts/install.sh --test makes it (deploy/container/debian-base.sh)"
    assert any(WHEELHOUSE.glob("pandas-*.whl")), f"{WHEELHOUSE} is empty: scripts/install.sh --test fills it"
    tag = f"localhost/cicd-audit:test{os.getpid()}"
    build = subprocess.run([str(REPO / "deploy/container/build-image.sh"), "--tag", tag, "--base", BASE_IMAGE,
                            "--wheelhouse", str(WHEELHOUSE), "--", *RUN_OPTIONS],
                           capture_output=True, text=True, timeout=900,
                           env=dict(os.environ, CICD_AUDIT=CICD_AUDIT))
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    try:
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)


# The job's container, unprivileged as in a pod: it tries to take the agent's TC programs off the
# shared interface and to reach the kernel's BPF objects, then makes its request anyway.
UNPRIVILEGED_JOB = """
import ctypes, errno, urllib.request
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
try:
    with IPRoute() as ipr:
        ipr.tc("del", "clsact", ipr.link_lookup(ifname=%r)[0])
    print("tc:removed")
except NetlinkError as exc:
    print("tc:refused" if exc.code == errno.EPERM else f"tc:{exc.code}")
libc = ctypes.CDLL(None, use_errno=True)
attr = ctypes.create_string_buffer(16)
rc = libc.syscall(321, 11, attr, 16)     # bpf(BPF_PROG_GET_NEXT_ID)
print("bpf:refused" if rc < 0 and ctypes.get_errno() == errno.EPERM else f"bpf:{rc}")
print(len(urllib.request.urlopen("http://%s:%d/", timeout=10).read()))
"""


def test_the_image_has_no_compiler_no_headers_and_the_prebuilt_programs(image):
    # ... and the C parts of the per-frame and per-message paths, built into the wheel on the build host.
    probe = ("import importlib.util, glob, shutil; "
             "from cicd_audit import compiled; "
             "print(importlib.util.find_spec('bcc') is None, shutil.which('clang') is None, "
             "glob.glob('/usr/src/linux-headers-*') == [], len(glob.glob('/usr/lib/cicd-audit/programs/*.json')), "
             "compiled.load_all() == {})")
    r = podman("run", "--rm", *RUN_OPTIONS, "--entrypoint", "/opt/cicd-audit/venv/bin/python", image, "-c", probe)
    assert r.stdout.split() == ["True", "True", "True", "4", "True"], r.stdout


def test_the_agent_in_its_container_records_a_job_of_the_runner_container_beside_it(image, lab, tmp_path):
    """Also the boundary the sidecar and DaemonSet layouts rely on: the job's unprivileged container,
    in the agent's network namespace, can neither detach the programs nor reach BPF."""
    work = tmp_path / "agent"
    (work / "run").mkdir(parents=True)
    (work / "sessions").mkdir()
    server = lab.popen(lab.server_ns, [sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", V4[1]],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    pod_network = f"--network=ns:/run/netns/{lab.client_ns}"      # one namespace for both, as in a pod
    name = f"cicd-audit-agent-test{os.getpid()}"
    agent = subprocess.Popen(
        ["podman", "run", "--rm", "--name", name, *RUN_OPTIONS, pod_network, "--privileged",
         "-v", f"{work / 'run'}:/run/cicd-audit", "-v", f"{work / 'sessions'}:/var/lib/cicd-audit/sessions",
         image, "agent", "--out", "/var/lib/cicd-audit/sessions", "--iface", lab.client_if],
        stderr=subprocess.PIPE, text=True)
    try:
        assert "jobs through /run/cicd-audit/agent.sock" in agent_ready(agent.stderr)[-1]
        sock = str(work / "run" / "agent.sock")
        start = subprocess.run([CICD_AUDIT, "job", "start", "--socket", sock, "--label", "repository=octo/app"],
                               capture_output=True, text=True, timeout=60)
        assert start.returncode == 0, start.stderr
        runner = podman("run", "--rm", *RUN_OPTIONS, pod_network, "--entrypoint",
                        "/opt/cicd-audit/venv/bin/python", image, "-c", UNPRIVILEGED_JOB % (lab.client_if, V4[1],
                                                                                              HTTP_PORT), timeout=120)
        assert runner.stdout.split()[:2] == ["tc:refused", "bpf:refused"], runner.stdout + runner.stderr
        assert int(runner.stdout.split()[2]) > 0
        end = subprocess.run([CICD_AUDIT, "job", "end", "--socket", sock], capture_output=True, text=True,
                             timeout=300)
        assert end.returncode == 0, end.stderr
    finally:
        podman("stop", "-t", "30", name, check=False, timeout=120)
        rest = agent.communicate(timeout=60)[1]
        server.terminate()
    assert agent.returncode == 0, rest[-2000:]
    [session] = list((work / "sessions").iterdir())
    conns = list(read_log(session / "conn.log")[1])
    web = [c for c in conns if c["id.resp_h"] == V4[1] and c["id.resp_p"] == HTTP_PORT]
    assert len(web) == 1 and web[0]["conn_state"] == "SF" and web[0]["proc.name"].startswith("python"), web
    assert json.loads((session / "job.json").read_text())["job"] == {"repository": "octo/app"}
    assert json.loads((session / "recorder.status").read_text())["recording"] == "complete"
    assert (session / "analysis.json").exists()
    deadline = time.monotonic() + 10
    while lab.tc_filters() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab.tc_filters() == "", "the stopped agent left programs attached"


BLOCKED_JOB = """
import socket, urllib.request
print(len(urllib.request.urlopen("http://%s:%d/", timeout=10).read()))
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("%s", 9999))
    print("connected")
except OSError as exc:
    print("refused", exc.errno)
"""


def test_the_image_records_and_blocks_a_job_without_a_compiler(image, lab, tmp_path):
    """`record --block -- COMMAND` inside the image: the allowed destination answers, another port
    of the same host is refused (EPERM at connect), and both are in conn.log."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "policy.yml").write_text(f'allowed:\n  cidrs: ["{V4[1]}/32:{HTTP_PORT}"]\n')
    server = lab.popen(lab.server_ns, [sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", V4[1]],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    try:
        r = podman("run", "--rm", *RUN_OPTIONS, f"--network=ns:/run/netns/{lab.client_ns}", "--privileged",
                   "-v", f"{work}:/w", image, "record", "--out", "/w/session", "--iface", lab.client_if,
                   "--block", "--policy", "/w/policy.yml", "--",
                   "/opt/cicd-audit/venv/bin/python", "-c", BLOCKED_JOB % (V4[1], HTTP_PORT, V4[1]), timeout=300)
    finally:
        server.terminate()
    fetched, refused = r.stdout.splitlines()
    assert int(fetched) > 0 and refused == "refused 1", r.stdout + r.stderr[-2000:]
    conns = list(read_log(work / "session" / "conn.log")[1])
    by_port = {c["id.resp_p"]: c for c in conns if c["id.resp_h"] == V4[1]}
    assert by_port[HTTP_PORT]["blocked"] is False and by_port[9999]["blocked"] is True, conns
