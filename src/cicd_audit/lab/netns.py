"""Network namespaces and veth pairs: building them, entering them, deleting them.

Only namespaces made here are ever configured; deleting a namespace removes
its veth ends, so nothing is left on the host's interfaces.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

RESOLVER_OPTIONS = "timeout:1 attempts:1"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def in_netns(ns: str, argv: list[str]) -> list[str]:
    """argv, run in the named network namespace.

    Unlike `ip netns exec`, which mounts a fresh /sys, this keeps the host's
    /sys visible: the cgroup v2 tree (socket hooks) and the bpffs
    (--fail-closed pins). Like it, /etc/netns/NS/resolv.conf, if present,
    replaces /etc/resolv.conf, in a private mount namespace.
    """
    resolv = f"/etc/netns/{ns}/resolv.conf"
    script = f'if [ -f {resolv} ]; then mount --bind {resolv} /etc/resolv.conf || exit 125; fi; exec "$@"'
    return ["nsenter", f"--net=/run/netns/{ns}", "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script, "sh", *argv]


def sysctl(ns: str, *settings: str) -> None:
    r = subprocess.run(in_netns(ns, ["sysctl", "-q", "-w", *settings]), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"sysctl {' '.join(settings)} in {ns} failed: {r.stderr}")


def add_namespace(ns: str) -> None:
    ip("netns", "add", ns)
    # No duplicate address detection on the veths made in it: an address (link-local
    # ones too) is usable at once. A router sends nothing from a tentative link-local
    # address, so the first forwarded IPv6 packet would otherwise wait ~1 s.
    sysctl(ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")


def link(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A veth pair between two namespaces, made inside them (never in the host's)."""
    ip("link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)


def configure(ns: str, dev: str, v4: str, v6: str, v4_prefix: int = 24, v6_prefix: int = 64) -> None:
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "addr", "add", f"{v4}/{v4_prefix}", "dev", dev)
    ip("-n", ns, "-6", "addr", "add", f"{v6}/{v6_prefix}", "dev", dev, "nodad")
    ip("-n", ns, "link", "set", dev, "up")


def add_address(ns: str, dev: str, address: str) -> None:
    """One more address on dev; IPv6 without duplicate address detection."""
    if ":" in address:
        ip("-n", ns, "-6", "addr", "add", address if "/" in address else f"{address}/64", "dev", dev, "nodad")
    else:
        ip("-n", ns, "addr", "add", address if "/" in address else f"{address}/24", "dev", dev)


def set_resolver(ns: str, server: str, options: str = RESOLVER_OPTIONS) -> None:
    """/etc/netns/NS/resolv.conf, which in_netns mounts over /etc/resolv.conf."""
    etc = Path("/etc/netns", ns)
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(f"nameserver {server}\noptions {options}\n")


def delete_namespace(ns: str) -> None:
    """Kill what still runs in ns (a daemon that forked, say), delete it and its /etc/netns directory."""
    for pid in ip("netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    ip("netns", "delete", ns, check=False)
    shutil.rmtree(Path("/etc/netns", ns), ignore_errors=True)


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list", check=False).stdout.splitlines() if line.strip()]
