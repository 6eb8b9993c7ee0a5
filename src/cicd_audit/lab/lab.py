"""`Lab`: the client and server namespaces of the address plan, their cgroup, servers and teardown.

Names carry the pid and a counter (naming.py), so parallel labs never collide.
close() stops every process it started, kills what is left in its cgroup and
namespaces, and deletes the namespaces (which removes the veth pairs), their
/etc/netns directories, the cgroups and its work directory; it is safe to call
twice, and a lab that fails while being built closes itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cicd_audit.lab import netns, services
from cicd_audit.lab.addresses import (
    CONTAINER_SUBNET_V4,
    CONTAINER_SUBNET_V6,
    CONTAINER_V4,
    CONTAINER_V6,
    DNS_DOMAIN,
    HTTP_PORT,
    OTHER_V4,
    OTHER_V6,
    UNREACHABLE_MAC,
    UNREACHABLE_V4,
    V4,
    V6,
)
from cicd_audit.lab.cgroups import cgroup_root, in_cgroup, remove_cgroup
from cicd_audit.lab.naming import LabNames
from cicd_audit.lab.teardown import stop_processes, sweep_stale
from cicd_audit.recorder.attach.cleanup import ensure_bpffs


def _cicd_audit() -> str:
    """The cicd-audit beside this interpreter (a venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("cicd-audit")
    return str(beside) if beside.exists() else shutil.which("cicd-audit") or str(beside)


CICD_AUDIT = _cicd_audit()
SERVER_ADDRESSES = (V4[1], V6[1], OTHER_V4, OTHER_V6)


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
        return netns.in_netns(self.ns, in_cgroup(self.cgroup, argv))


class Lab:
    """client namespace <veth> server namespace, with a cgroup; see addresses.py for the plan."""

    def __init__(self) -> None:
        sweep_stale()
        names = LabNames.new()
        self._names = names
        self.client_ns, self.server_ns = names.client_ns, names.server_ns
        self.client_if, self.server_if = names.client_if, names.server_if
        self.cgroup = cgroup_root() / names.cgroup
        self.container: Container | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix=names.workdir_prefix))
        self._procs: list[subprocess.Popen] = []
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            self._made.append(ns)
            netns.add_namespace(ns)
        netns.link(self.client_ns, self.client_if, self.server_ns, self.server_if)
        netns.configure(self.client_ns, self.client_if, V4[0], V6[0])
        netns.configure(self.server_ns, self.server_if, V4[1], V6[1])
        netns.ip("-n", self.client_ns, "neigh", "add", UNREACHABLE_V4, "lladdr", UNREACHABLE_MAC,
                 "dev", self.client_if, "nud", "permanent")
        self.add_server_address(OTHER_V4)
        self.add_server_address(OTHER_V6)
        self.set_resolver(self.client_ns)
        self.cgroup.mkdir()
        # The lab runs recorders in private mount namespaces (netns.in_netns), where a bpffs they
        # mounted would vanish with them (--fail-closed refuses to): the host's must be there.
        ensure_bpffs()

    def add_server_address(self, address: str) -> None:
        """One more address on the server's veth end (addresses.server_v4 picks a free one)."""
        netns.add_address(self.server_ns, self.server_if, address)

    def set_resolver(self, ns: str, options: str = netns.RESOLVER_OPTIONS) -> None:
        """The lab's dnsmasq as ns's resolver (done for the client when the lab is built)."""
        netns.set_resolver(ns, V4[1], options)

    def sysctl(self, ns: str, *settings: str) -> None:
        netns.sysctl(ns, *settings)

    def add_container(self) -> Container:
        """A container namespace routed through the client namespace (once per lab)."""
        if self.container is not None:
            return self.container
        n = self._names
        c = Container(ns=n.container_ns, host_if=n.container_host_if, iface=n.container_if,
                      v4=CONTAINER_V4[1], v6=CONTAINER_V6[1], cgroup=self.cgroup / "container")
        self._made.append(c.ns)
        netns.add_namespace(c.ns)
        netns.link(self.client_ns, c.host_if, c.ns, c.iface)
        netns.configure(self.client_ns, c.host_if, CONTAINER_V4[0], CONTAINER_V6[0])
        netns.configure(c.ns, c.iface, CONTAINER_V4[1], CONTAINER_V6[1])
        netns.ip("-n", c.ns, "route", "add", "default", "via", CONTAINER_V4[0])
        netns.ip("-n", c.ns, "-6", "route", "add", "default", "via", CONTAINER_V6[0])
        netns.ip("-n", self.server_ns, "route", "add", CONTAINER_SUBNET_V4, "via", V4[0])
        netns.ip("-n", self.server_ns, "-6", "route", "add", CONTAINER_SUBNET_V6, "via", V6[0])
        netns.sysctl(self.client_ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        self.set_resolver(c.ns)
        c.cgroup.mkdir()
        self.container = c
        return c

    # -- running things -------------------------------------------------------------------

    def cmd(self, ns: str, argv: list[str]) -> list[str]:
        return netns.in_netns(ns, argv)

    def run(self, ns: str, argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.cmd(ns, argv), timeout=timeout, **kw)

    def popen(self, ns: str, argv: list[str], **kw) -> subprocess.Popen:
        """A long-running process in ns, stopped by close()."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.cmd(ns, argv), **kw)
        self._procs.append(proc)
        return proc

    @property
    def processes(self) -> list[subprocess.Popen]:
        """The processes popen() started, oldest first."""
        return list(self._procs)

    def in_cgroup(self, argv: list[str]) -> list[str]:
        """argv, run as a member of this lab's cgroup."""
        return in_cgroup(self.cgroup, argv)

    def cgroup_option(self) -> list[str]:
        """The recorder's option that keeps its socket hooks on this lab's cgroup."""
        return ["--cgroup", str(self.cgroup)]

    def record_argv(self, out_dir: Path, command: list[str] | None = None, *extra: str,
                    iface: str | None = None, cli: list[str] | None = None) -> list[str]:
        """`cicd-audit record` (or cli's) in the lab's cgroup, its socket hooks on that cgroup."""
        argv = [*(cli or [CICD_AUDIT]), "record", "--out", str(out_dir), "--iface", iface or self.client_if,
                *self.cgroup_option(), *extra]
        if command:
            argv += ["--", *command]
        return self.in_cgroup(argv)

    def record(self, out_dir: Path, command: list[str] | None = None, *extra: str, timeout: float = 120,
               iface: str | None = None, cli: list[str] | None = None, **kw) -> subprocess.CompletedProcess:
        """`cicd-audit record` in the client namespace, around `command`, in the lab's cgroup: TC on
        the client's uplink veth, or on iface (e.g. the container's veth end in the client namespace)."""
        return self.run(self.client_ns, self.record_argv(out_dir, command, *extra, iface=iface, cli=cli),
                        timeout=timeout, **kw)

    def tc_filters(self) -> str:
        """What is attached at TC on the client's veth, "" when nothing is: legacy filters
        (`tc filter show`), then a "tcx <direction> prog ids ..." line per direction with tcx programs
        (BPF_PROG_QUERY inside the namespace, where the ifindex means this veth)."""
        out = []
        for direction in ("ingress", "egress"):
            out.append(self.run(self.client_ns, ["tc", "filter", "show", "dev", self.client_if, direction]).stdout)
        query = ("import socket, sys\n"
                 "from cicd_audit.recorder.attach.attach import tcx_program_ids\n"
                 "for direction, ids in tcx_program_ids(socket.if_nametoindex(sys.argv[1])).items():\n"
                 "    if ids:\n"
                 "        print('tcx', direction, 'prog ids', *ids)\n")
        tcx = self.run(self.client_ns, [sys.executable, "-c", query, self.client_if])
        if tcx.returncode != 0:
            raise RuntimeError(f"querying the tcx programs on {self.client_if} failed: {tcx.stderr}")
        out.append(tcx.stdout)
        return "".join(out).strip()

    # -- servers in the server namespace --------------------------------------------------

    def start_dnsmasq(self, answers: Mapping[str, Iterable[str]] | None = None, extra_config: Iterable[str] = (),
                      stderr=subprocess.DEVNULL) -> subprocess.Popen:
        """dnsmasq on the server's addresses, answering `answers` (by default every name under
        example.test with the server's addresses) and nothing else; ready when it returns."""
        if answers is None:
            answers = {DNS_DOMAIN: (V4[1], V6[1])}
        conf = self.workdir / "dnsmasq.conf"
        conf.write_text(services.dnsmasq_config((V4[1], V6[1]), answers, extra_config))
        proc = self.popen(self.server_ns, services.dnsmasq_argv(conf), stdout=subprocess.DEVNULL, stderr=stderr)
        self.wait_listening("-lun", f"{V4[1]}:53")
        self.wait_listening("-ltn", f"{V4[1]}:53")
        return proc

    def start_http(self, port: int = HTTP_PORT, addresses: Iterable[str] = SERVER_ADDRESSES,
                   directory: str | Path = "/") -> None:
        """An http.server per address, serving directory; ready when it returns."""
        addresses = list(addresses)
        for address in addresses:
            self.popen(self.server_ns, services.http_argv(address, port, directory),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for address in addresses:
            self.wait_listening("-ltn", services.ss_local(address, port))

    def udp_sink(self, address: str, port: int) -> services.UdpSink:
        """A UDP server at address:port in the server namespace (an attacker's, say) that
        notes the size of every datagram it receives."""
        return services.UdpSink(self.popen(self.server_ns, services.udp_sink_argv(address, port),
                                           stdout=subprocess.PIPE, text=True))

    def wait_listening(self, ss_flags: str, local: str, timeout: float = 15, ns: str | None = None) -> None:
        """Wait until `ss -H ss_flags` in ns (the server's) lists local, e.g. "10.99.0.2:53"."""
        ns = ns or self.server_ns
        self.wait_until(f"something listening on {local}",
                        lambda: local in self.run(ns, ["ss", "-H", ss_flags]).stdout, timeout)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float = 15) -> None:
        """Poll ready() until it is true; fail at once when a process this lab started has exited."""
        deadline = time.monotonic() + timeout
        while not ready():
            for p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(f"waiting for {what}: a server exited with {p.returncode}: {p.args}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"waited {timeout} s for {what}")
            time.sleep(0.1)

    # -- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        stop_processes(self._procs)
        remove_cgroup(self.cgroup)
        while self._made:
            netns.delete_namespace(self._made.pop())
        shutil.rmtree(self.workdir, ignore_errors=True)
