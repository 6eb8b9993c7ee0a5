"""A two-namespace lab for the live recorder tests: never the host's interfaces.

    client namespace  <veth pair>  server namespace
    10.99.0.1/24                   10.99.0.2/24, 10.99.0.5/24 (OTHER_V4)
    fd00:ca::1/64                  fd00:ca::2/64, fd00:ca::5/64 (OTHER_V6)

`add_container()` adds a third namespace, like a container on a routed
bridge: its own veth pair to the client namespace, which forwards (no NAT),
and routes back to it in the server namespace.

    container namespace  <veth pair>  client namespace (router)
    10.98.0.2/24                      10.98.0.1/24
    fd00:cb::2/64                     fd00:cb::1/64

The client namespace resolves through dnsmasq at 10.99.0.2 once it runs
(/etc/netns/<ns>/resolv.conf, which `cmd()` mounts over /etc/resolv.conf). Each lab also
has a cgroup v2 directory of its own: `record()` runs the recorder (and so
its command) inside it and points the socket hooks at it, so no test
attaches anything to the host's cgroups, and `in_cgroup()` puts any other
client there.

The container's processes run in a child of the lab's cgroup (as Docker gives
each container a cgroup of its own below the one the recorder watches) and
resolve through dnsmasq too; it shares the host's pid and mount namespaces,
so its pids are the ones the recorder sees.

Names carry the pid and a counter (cat<pid>x<n>c/s/k), so parallel runs never
collide, and namespaces and cgroups left by a killed run (dead pid) are
removed on the next run. `close()` terminates every server it started, kills
what is left in its cgroup and the container's, and deletes the namespaces
(which removes the veth pairs), their /etc/netns directories and the
cgroups; it is safe to call twice and runs from the `lab` fixture's
finalizer even when a test fails.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cicd_audit.demo import in_netns

V4 = ("10.99.0.1", "10.99.0.2")
V6 = ("fd00:ca::1", "fd00:ca::2")
OTHER_V4, OTHER_V6 = "10.99.0.5", "fd00:ca::5"   # a second server address, never in DNS answers
UNREACHABLE_V4 = "10.99.0.3"                 # static neighbour, nobody answers
UNREACHABLE_MAC = "02:ca:00:00:00:99"
CONTAINER_V4 = ("10.98.0.1", "10.98.0.2")   # the client namespace's side (the gateway), the container
CONTAINER_V6 = ("fd00:cb::1", "fd00:cb::2")
DNS_NAME = "www.example.test"
HTTP_PORT = 8080
VENV_BIN = Path(sys.executable).parent
CICD_AUDIT = str(VENV_BIN / "cicd-audit")

_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


_NAME = re.compile(r"^cat(\d+)x\d+[csk]\b")
_CGROUP_NAME = re.compile(r"^cicd-audit-lab-(\d+)x\d+$")


def cgroup_root() -> Path:
    from cicd_audit.recorder.cgroup_attach import cgroup2_mount
    root = cgroup2_mount()
    if root is None:
        raise RuntimeError("no cgroup v2 hierarchy is mounted")
    return root


def in_cgroup(cgroup: Path, argv: list[str]) -> list[str]:
    """argv, run as a member of a cgroup (the shell execs it, so it keeps the shell's pid)."""
    return ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh", *argv]


def _remove_cgroup(path: Path) -> None:
    """Kill what is in a lab cgroup and its children, and remove them all (children first)."""
    if not path.exists():
        return
    for child in [p for p in path.iterdir() if p.is_dir()]:
        _remove_cgroup(child)
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
    """Delete lab namespaces, /etc/netns directories and cgroups left by a test run
    that was killed (its pid is gone)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        m = _NAME.match(line)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _ip("netns", "delete", line.split()[0], check=False)
    for path in Path("/etc/netns").glob("cat*"):
        m = _NAME.match(path.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            shutil.rmtree(path, ignore_errors=True)
    for path in cgroup_root().glob("cicd-audit-lab-*"):
        m = _CGROUP_NAME.match(path.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _remove_cgroup(path)


@dataclass(frozen=True)
class Container:
    """A container's network namespace and cgroup (Lab.add_container())."""

    ns: str
    host_if: str        # its veth's end in the client namespace
    iface: str          # its veth's end in its own namespace
    v4: str
    v6: str
    cgroup: Path        # a child of the lab's cgroup

    def cmd(self, argv: list[str]) -> list[str]:
        """argv, run in the container: its namespace, its resolv.conf, its cgroup (and argv's own pid)."""
        return in_netns(self.ns, in_cgroup(self.cgroup, argv))


UDP_SINK = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    data, _ = s.recvfrom(65536)
    print(len(data), flush=True)
"""


class UdpSink:
    def __init__(self, proc: subprocess.Popen) -> None:
        if proc.stdout.readline() != "listening\n":
            raise RuntimeError(f"the UDP sink did not start: {proc.args}")
        self._proc = proc
        self._sizes: list[int] = []
        self._reader = threading.Thread(target=lambda: self._sizes.extend(int(n) for n in proc.stdout),
                                         daemon=True)
        self._reader.start()

    def stop(self) -> list[int]:
        """Stop listening (whatever was sent has arrived by now); the sizes received."""
        self._proc.terminate()
        self._proc.wait(5)
        self._reader.join(5)
        return self._sizes


class Lab:
    def __init__(self) -> None:
        _remove_stale()
        n = next(_counter)
        tag = f"{os.getpid()}x{n}"
        self._tag = tag
        self.client_ns, self.server_ns = f"cat{tag}c", f"cat{tag}s"
        self.client_if, self.server_if = f"cv{tag}", f"sv{tag}"   # <= 15 characters
        self.cgroup = cgroup_root() / f"cicd-audit-lab-{tag}"
        self.container: Container | None = None
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
        self._write_resolv_conf(self.client_ns)
        self.cgroup.mkdir()

    @staticmethod
    def _write_resolv_conf(ns: str) -> None:
        """dnsmasq as the namespace's resolver (in_netns mounts it over /etc/resolv.conf)."""
        etc = Path("/etc/netns", ns)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {V4[1]}\noptions timeout:1 attempts:1\n")

    def add_container(self) -> Container:
        """A container namespace routed through the client namespace (once per lab)."""
        if self.container is not None:
            return self.container
        c = Container(ns=f"cat{self._tag}k", host_if=f"kv{self._tag}", iface=f"ke{self._tag}",
                      v4=CONTAINER_V4[1], v6=CONTAINER_V6[1], cgroup=self.cgroup / "container")
        _ip("netns", "add", c.ns)
        self._made.append(c.ns)
        _ip("link", "add", c.host_if, "netns", self.client_ns, "type", "veth", "peer", "name", c.iface,
            "netns", c.ns)
        for ns, dev, v4, v6 in ((self.client_ns, c.host_if, CONTAINER_V4[0], CONTAINER_V6[0]),
                                (c.ns, c.iface, CONTAINER_V4[1], CONTAINER_V6[1])):
            self._sysctl(ns, f"net.ipv6.conf.{dev}.accept_dad=0")    # see _wait_ipv6_ready
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            _ip("-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", c.ns, "route", "add", "default", "via", CONTAINER_V4[0])
        _ip("-n", c.ns, "-6", "route", "add", "default", "via", CONTAINER_V6[0])
        _ip("-n", self.server_ns, "route", "add", "10.98.0.0/24", "via", V4[0])
        _ip("-n", self.server_ns, "-6", "route", "add", "fd00:cb::/64", "via", V6[0])
        self._sysctl(self.client_ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        self._wait_ipv6_ready(self.client_ns, self.client_if)
        self._write_resolv_conf(c.ns)
        c.cgroup.mkdir()
        self.container = c
        return c

    def _sysctl(self, ns: str, *settings: str) -> None:
        r = self.run(ns, ["sysctl", "-q", "-w", *settings])
        if r.returncode != 0:
            raise RuntimeError(f"sysctl {' '.join(settings)} in {ns} failed: {r.stderr}")

    def _wait_ipv6_ready(self, ns: str, dev: str, timeout: float = 5) -> None:
        """Wait until dev's link-local address has passed duplicate address detection. A router
        solicits neighbours for forwarded packets from its link-local address, and sends nothing
        while that is tentative: the first forwarded IPv6 packet would wait ~1 s for a retry."""
        deadline = time.monotonic() + timeout
        while _ip("-n", ns, "-6", "addr", "show", "dev", dev, "tentative").stdout.strip():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{dev} in {ns} still has a tentative IPv6 address after {timeout}s")
            time.sleep(0.05)

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
        return in_cgroup(self.cgroup, argv)

    def record_argv(self, out_dir: Path, command: list[str] | None = None, *extra: str,
                    iface: str | None = None) -> list[str]:
        argv = [CICD_AUDIT, "record", "--out", str(out_dir), "--iface", iface or self.client_if,
                "--cgroup", str(self.cgroup), *extra]
        if command:
            argv += ["--", *command]
        return self.in_cgroup(argv)

    def record(self, out_dir: Path, command: list[str] | None = None, *extra: str,
               timeout: float = 120, iface: str | None = None) -> subprocess.CompletedProcess:
        """`cicd-audit record` in the client namespace, around `command`, in the lab's cgroup: TC on
        the client's uplink veth, or on iface (e.g. the container's veth end in the client namespace)."""
        return self.run(self.client_ns, self.record_argv(out_dir, command, *extra, iface=iface), timeout=timeout)

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

    def udp_sink(self, address: str, port: int) -> UdpSink:
        """A UDP server at address:port in the server namespace (an attacker's, say) that
        notes the size of every datagram it receives."""
        return UdpSink(self.popen(self.server_ns, [sys.executable, "-c", UDP_SINK, address, str(port)],
                                  stdout=subprocess.PIPE, text=True))

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
            ns = self._made.pop()
            _ip("netns", "delete", ns, check=False)
            shutil.rmtree(Path("/etc/netns", ns), ignore_errors=True)
