"""The servers a lab runs in its server namespace, and how to tell they are ready.

dnsmasq answers the lab's names (the job's resolver), http.server serves a
directory, a UDP sink counts what reaches it. Readiness is read from `ss` in
the server's namespace, so no probe packet crosses the veth a recorder
watches.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path


def dnsmasq_config(listen: Iterable[str], answers: Mapping[str, Iterable[str]], extra: Iterable[str] = ()) -> str:
    """A dnsmasq.conf that answers only from itself: `answers` maps a domain (and every
    name under it) to its addresses; `extra` adds lines (records, delegations, cache size)."""
    lines = ["no-resolv", "no-hosts", "bind-interfaces", f"listen-address={','.join(listen)}",
             "except-interface=lo", "user=root", "pid-file="]
    lines += [f"address=/{domain}/{address}" for domain, addresses in answers.items() for address in addresses]
    lines += list(extra)
    return "\n".join(lines) + "\n"


def dnsmasq_argv(conf: Path) -> list[str]:
    return [shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--no-daemon", f"--conf-file={conf}"]


def http_argv(address: str, port: int, directory: str | Path) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", address, "--directory", str(directory)]


def ss_local(address: str, port: int) -> str:
    """How `ss` writes a local address: IPv6 in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


UDP_SINK = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    data, _ = s.recvfrom(65536)
    print(len(data), flush=True)
"""


def udp_sink_argv(address: str, port: int) -> list[str]:
    return [sys.executable, "-c", UDP_SINK, address, str(port)]


class UdpSink:
    """A started UDP sink (udp_sink_argv, stdout piped as text): the sizes it received."""

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


AGENT_READY = "jobs through"      # in the line `cicd-audit agent` says once it records


def agent_ready(stderr, max_lines: int = 10) -> list[str]:
    """Read a started agent's stderr (a text stream) up to the line saying it records: the
    lines read, that one last (before it, one-line notices such as a kernel feature it goes
    without)."""
    lines = []
    for _ in range(max_lines):
        line = stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if AGENT_READY in line:
            return lines
    raise RuntimeError(f"the agent did not say it records; it said: {lines}")
