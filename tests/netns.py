"""A two-namespace lab for the live recorder tests: never the host's interfaces.

    client namespace  <veth pair>  server namespace
    10.99.0.1/24                   10.99.0.2/24, 10.99.0.5/24 (OTHER_V4)
    fd00:ca::1/64                  fd00:ca::2/64, fd00:ca::5/64 (OTHER_V6)

The client namespace resolves through dnsmasq at 10.99.0.2 once it runs
(/etc/netns/<ns>/resolv.conf, which `cmd()` mounts over /etc/resolv.conf). Each lab also
has a cgroup v2 directory of its own: `record()` runs the recorder (and so
its command) inside it and points the socket hooks at it, so no test
attaches anything to the host's cgroups, and `in_cgroup()` puts any other
client there.

Names carry the pid and a counter (cat<pid>x<n>c/s), so parallel runs never
collide, and namespaces and cgroups left by a killed run (dead pid) are
removed on the next run. `close()` terminates every server it started, kills
what is left in its cgroup, and deletes both namespaces (which removes the
veth pair) and the cgroup; it is safe to call twice and runs from the `lab`
fixture's finalizer even when a test fails.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from cicd_audit.demo import in_netns

V4 = ("10.99.0.1", "10.99.0.2")
V6 = ("fd00:ca::1", "fd00:ca::2")
OTHER_V4, OTHER_V6 = "10.99.0.5", "fd00:ca::5"   # a second server address, never in DNS answers
UNREACHABLE_V4 = "10.99.0.3"                 # static neighbour, nobody answers
UNREACHABLE_MAC = "02:ca:00:00:00:99"
DNS_NAME = "www.example.test"
HTTP_PORT = 8080
VENV_BIN = Path(sys.executable).parent
CICD_AUDIT = str(VENV_BIN / "cicd-audit")

_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


_NAME = re.compile(r"^cat(\d+)x\d+[cs]\b")
_CGROUP_NAME = re.compile(r"^cicd-audit-lab-(\d+)x\d+$")


def cgroup_root() -> Path:
    from cicd_audit.recorder.cgroup_attach import cgroup2_mount
    root = cgroup2_mount()
    if root is None:
        raise RuntimeError("no cgroup v2 hierarchy is mounted")
    return root


def _remove_cgroup(path: Path) -> None:
    """Kill what is in a lab cgroup and remove it."""
    if not path.exists():
        return
    kill = path / "cgroup.kill"
    for _ in range(50):
        pids = (path / "cgroup.procs").read_text().split()
        if not pids:
            break
        if kill.exists():
            kill.write_text("1")
        else:
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.1)
    try:
        path.rmdir()
    except OSError:
        pass


def _remove_stale() -> None:
    """Delete lab namespaces and cgroups left by a test run that was killed (its pid is gone)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        m = _NAME.match(line)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _ip("netns", "delete", line.split()[0], check=False)
            shutil.rmtree(Path("/etc/netns", line.split()[0]), ignore_errors=True)
    for path in cgroup_root().glob("cicd-audit-lab-*"):
        m = _CGROUP_NAME.match(path.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _remove_cgroup(path)


class Lab:
    def __init__(self) -> None:
        _remove_stale()
        n = next(_counter)
        tag = f"{os.getpid()}x{n}"
        self.client_ns, self.server_ns = f"cat{tag}c", f"cat{tag}s"
        self.client_if, self.server_if = f"cv{tag}", f"sv{tag}"   # <= 15 characters
        self.cgroup = cgroup_root() / f"cicd-audit-lab-{tag}"
        self._procs: list[subprocess.Popen] = []
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            _ip("netns", "add", ns)
            self._made.append(ns)
        _ip("link", "add", self.client_if, "netns", self.client_ns, "type", "veth",
            "peer", "name", self.server_if, "netns", self.server_ns)
        for ns, dev, v4, v6 in ((self.client_ns, self.client_if, V4[0], V6[0]),
                                (self.server_ns, self.server_if, V4[1], V6[1])):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            _ip("-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", self.client_ns, "neigh", "add", UNREACHABLE_V4, "lladdr", UNREACHABLE_MAC,
            "dev", self.client_if, "nud", "permanent")
        _ip("-n", self.server_ns, "addr", "add", f"{OTHER_V4}/24", "dev", self.server_if)
        _ip("-n", self.server_ns, "-6", "addr", "add", f"{OTHER_V6}/64", "dev", self.server_if, "nodad")
        resolv = Path("/etc/netns", self.client_ns)
        resolv.mkdir(parents=True, exist_ok=True)
        (resolv / "resolv.conf").write_text(f"nameserver {V4[1]}\noptions timeout:1 attempts:1\n")
        self.cgroup.mkdir()

    # -- running things -------------------------------------------------------------------

    def cmd(self, ns: str, argv: list[str]) -> list[str]:
        return in_netns(ns, argv)

    def run(self, ns: str, argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.cmd(ns, argv), timeout=timeout, **kw)

    def popen(self, ns: str, argv: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(self.cmd(ns, argv), **kw)
        self._procs.append(proc)
        return proc

    def in_cgroup(self, argv: list[str]) -> list[str]:
        """argv, run as a member of this lab's cgroup."""
        return ["sh", "-c", f'echo $$ > {self.cgroup}/cgroup.procs && exec "$@"', "sh", *argv]

    def record_argv(self, out_dir: Path, command: list[str] | None = None, *extra: str) -> list[str]:
        argv = [CICD_AUDIT, "record", "--out", str(out_dir), "--iface", self.client_if,
                "--cgroup", str(self.cgroup), *extra]
        if command:
            argv += ["--", *command]
        return self.in_cgroup(argv)

    def record(self, out_dir: Path, command: list[str] | None = None, *extra: str,
               timeout: float = 120) -> subprocess.CompletedProcess:
        """`cicd-audit record` in the client namespace on its veth, around `command`, in the lab's cgroup."""
        return self.run(self.client_ns, self.record_argv(out_dir, command, *extra), timeout=timeout)

    def tc_filters(self) -> str:
        """What is attached at TC on the client's veth, "" when nothing is: legacy filters
        (`tc filter show`), then a "tcx <direction> prog ids ..." line per direction with tcx programs
        (BPF_PROG_QUERY inside the namespace, where the ifindex means this veth)."""
        out = []
        for direction in ("ingress", "egress"):
            out.append(self.run(self.client_ns, ["tc", "filter", "show", "dev", self.client_if, direction]).stdout)
        query = ("import socket, sys\n"
                 "from cicd_audit.recorder.attach import tcx_program_ids\n"
                 "for direction, ids in tcx_program_ids(socket.if_nametoindex(sys.argv[1])).items():\n"
                 "    if ids:\n"
                 "        print('tcx', direction, 'prog ids', *ids)\n")
        tcx = self.run(self.client_ns, [sys.executable, "-c", query, self.client_if])
        if tcx.returncode != 0:
            raise RuntimeError(f"querying the tcx programs on {self.client_if} failed: {tcx.stderr}")
        out.append(tcx.stdout)
        return "".join(out).strip()

    # -- servers in the server namespace --------------------------------------------------

    def start_dnsmasq(self) -> None:
        self.popen(self.server_ns, [
            shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
            "--listen-address", f"{V4[1]},{V6[1]}", "--bind-interfaces", "--except-interface", "lo",
            f"--address=/example.test/{V4[1]}", f"--address=/example.test/{V6[1]}",
            "--pid-file=", "--user=root"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_listening("-lun", f"{V4[1]}:53")
        self._wait_listening("-ltn", f"{V4[1]}:53")

    def start_http(self) -> None:
        for addr in (V4[1], V6[1], OTHER_V4, OTHER_V6):
            self.popen(self.server_ns, [sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", addr],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        for addr in (V4[1], f"[{V6[1]}]", OTHER_V4, f"[{OTHER_V6}]"):
            self._wait_listening("-ltn", f"{addr}:{HTTP_PORT}")

    def _wait_listening(self, ss_flags: str, local: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if local in self.run(self.server_ns, ["ss", "-H", ss_flags]).stdout:
                return
            for p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(f"server exited with {p.returncode}: {p.args}")
            time.sleep(0.1)
        raise RuntimeError(f"nothing listening on {local} after {timeout}s")

    # -- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self._procs.clear()
        _remove_cgroup(self.cgroup)
        while self._made:
            _ip("netns", "delete", self._made.pop(), check=False)
        shutil.rmtree(Path("/etc/netns", self.client_ns), ignore_errors=True)
