#!/usr/bin/env python3
"""Per-packet cost of the connected-UDP socket hook (ca_udp_egress, cgroup_skb egress).

That hook runs only where the kernel cannot run the per-connect one (fentry; see
recorder/attach/udp_connect_hooks.py): the recorder here is asked for it.

A recorder runs in the netns lab (cicd_audit.lab) with its socket hooks on the
lab's cgroup; a no-op cgroup_skb program is attached next to ca_udp_egress on
the same cgroup, so both see the same packets. A container (its own namespace,
a child cgroup) then sends, round by round: 100,000 22-byte datagrams on one
connected UDP socket, 100,000 22-byte TCP_NODELAY writes, and the first datagram
of 5,000 new connected UDP sockets. Cost = delta run_time_ns / delta run_cnt
(kernel.bpf_stats_enabled, restored afterwards), ours next to the no-op's.

    sudo python bench/udp_hook_cost.py [--rounds 5]

Traffic stays inside the lab's namespaces, which are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cicd_audit.lab import V4, Lab
from cicd_audit.recorder.attach import udp_connect_hooks
from cicd_audit.recorder.attach.cgroup_attach import CgroupAttachment, cgroup_program_ids
from cicd_audit.recorder.kernel import bpf_syscall

NOOP = bytes([0xb7, 0, 0, 0, 1, 0, 0, 0]) + bytes([0x95, 0, 0, 0, 0, 0, 0, 0])   # r0 = 1; exit
UDP_PORT, TCP_PORT = 9999, 9998
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")

SENDERS = {
    "connected UDP, 22 B datagrams": f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('{V4[1]}', {UDP_PORT}))
for i in range(100000): s.send(b'x' * 22)
""",
    "TCP, 22 B segments (TCP_NODELAY)": f"""
import socket
s = socket.create_connection(('{V4[1]}', {TCP_PORT})); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for i in range(100000): s.send(b'x' * 22)
s.close()
""",
    "new connected UDP socket, first datagram": f"""
import socket
for i in range(5000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('{V4[1]}', {UDP_PORT})); s.send(b'x'); s.close()
""",
}
SINKS = [
    f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{V4[1]}', {UDP_PORT}))\n"
    "while True: s.recv(65536)",
    f"import socket\nl = socket.create_server(('{V4[1]}', {TCP_PORT}))\n"
    "while True:\n    a, _ = l.accept()\n    while a.recv(65536): pass\n    a.close()",
]


def run_stats(fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of the program behind fd."""
    info = dict(line.split(":", 1) for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines())
    return int(info["run_time_ns"]), int(info["run_cnt"])


def wait_attached(lab: Lab, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while not cgroup_program_ids(lab.cgroup)["egress"]:
        if time.monotonic() > deadline:
            raise RuntimeError("the recorder never attached its socket hooks")
        time.sleep(0.1)
    return bpf_syscall.prog_get_fd_by_id(cgroup_program_ids(lab.cgroup)["egress"][0])


def measure(lab: Lab, container, ours: int, noop: int, rounds: int) -> dict[str, tuple[list, list]]:
    results = {name: ([], []) for name in SENDERS}
    for r in range(rounds):
        for name, code in SENDERS.items():
            ours0, noop0 = run_stats(ours), run_stats(noop)
            sent = subprocess.run(container.cmd([sys.executable, "-c", code]), capture_output=True, text=True)
            if sent.returncode != 0:
                raise RuntimeError(f"{name}: {sent.stderr}")
            ours1, noop1 = run_stats(ours), run_stats(noop)
            results[name][0].append((ours1[0] - ours0[0]) / max(1, ours1[1] - ours0[1]))
            results[name][1].append((noop1[0] - noop0[0]) / max(1, noop1[1] - noop0[1]))
            print(f"  round {r + 1} {name}: {ours1[1] - ours0[1]} runs, ours {results[name][0][-1]:.1f} ns, "
                  f"no-op {results[name][1][-1]:.1f} ns", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("udp_hook_cost: needs root (network namespaces, BPF)", file=sys.stderr)
        return 2
    before = STATS.read_text().strip()
    lab = Lab()
    out = Path(tempfile.mkdtemp(prefix="cicd-audit-udp-hook-"))
    try:
        container = lab.add_container()
        for sink in SINKS:
            lab.popen(lab.server_ns, [sys.executable, "-c", sink])
        time.sleep(0.5)
        recorder = lab.popen(lab.client_ns, lab.record_argv(out / "logs"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, udp_connect_hooks.PER_PACKET_ENV: "1"})
        ours = wait_attached(lab)
        noop = bpf_syscall.prog_load("ca_noop_skb", NOOP, bpf_syscall.PROG_CGROUP_SKB,
                                     expected_attach_type=bpf_syscall.ATTACH_CGROUP_INET_EGRESS)
        STATS.write_text("1")
        with CgroupAttachment(lab.cgroup, {bpf_syscall.ATTACH_CGROUP_INET_EGRESS: noop}):
            results = measure(lab, container, ours, noop, args.rounds)
        for name, (o, n) in results.items():
            print(f"{name}: ca_udp_egress {statistics.median(o):.1f} ns, no-op {statistics.median(n):.1f} ns, "
                  f"+{statistics.median(o) - statistics.median(n):.1f} ns (medians of {args.rounds})")
        recorder.send_signal(signal.SIGINT)
        recorder.wait(30)
        os.close(ours)
        os.close(noop)
    finally:
        STATS.write_text(before)
        lab.close()
        subprocess.run(["rm", "-rf", str(out)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
