#!/usr/bin/env python3
"""Per-query cost of blocking mode's DNS name check, A/B between two versions of bpf/.

Compiles the blocking variant from bpf/ as it is in the work tree (B) and as
it is at a git revision (A), loads both with the syscall loader, and runs a
UDP DNS query through each one's egress entry with BPF_PROG_TEST_RUN
(repeat=N in the kernel), alternating A and B round by round. The query goes
to a resolver the policy allows, so each run walks ca_dns_policy and
ca_dns_name (copy, hash, rule lookup). Nothing is attached anywhere.

    sudo python bench/dns_name_cost.py [--base-rev HEAD] [--rounds 7] [--repeat 100000]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import tempfile
from pathlib import Path

from scapy.all import DNS, DNSQR, IP, UDP, Ether

from cicd_audit.policy import parse_policy
from cicd_audit.recorder.attach.job_scope import JobScope
from cicd_audit.recorder.kernel import bpf_program, kernel_headers
from cicd_audit.recorder.kernel import packet_runner as tr
from cicd_audit.recorder.kernel.block_tables import PolicyTables

REPO = Path(__file__).resolve().parent.parent
RESOLVER = "10.0.0.53"
POLICY = "allowed:\n  domains: [pypi.org, '*.pythonhosted.org']\n"
NAMES = {
    "pypi.org (allowed)": "pypi.org",
    "files.pythonhosted.org (allowed)": "files.pythonhosted.org",
    "62-byte name (allowed)": "a" * 30 + ".b" * 5 + ".files.pythonhosted.org",
    "122-byte name (allowed)": ".".join(["abcdefghi"] * 10) + ".files.pythonhosted.org",
    "pypi.com (refused: NXDOMAIN)": "pypi.com",
}


def query(name: str) -> bytes:
    return bytes(Ether() / IP(src="10.0.0.1", dst=RESOLVER) / UDP(sport=40000, dport=53)
                 / DNS(id=7, rd=1, qd=DNSQR(qname=name)))


def ns_per_run(prog_fd: int, frame: bytes, repeat: int) -> int:
    ctx = ctypes.create_string_buffer(tr.SKB_CTX_SIZE)
    data = ctypes.create_string_buffer(frame, len(frame))
    out = ctypes.create_string_buffer(len(frame) + 512)
    attr = tr._TestAttr(prog_fd=prog_fd, data_size_in=len(frame), data_in=ctypes.addressof(data),
                        data_size_out=len(out), data_out=ctypes.addressof(out), repeat=repeat,
                        ctx_size_in=tr.SKB_CTX_SIZE, ctx_in=ctypes.addressof(ctx))
    if tr._libc.syscall(tr.SYS_BPF, tr.BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        raise OSError(ctypes.get_errno(), "BPF_PROG_TEST_RUN failed")
    return attr.duration


def sources_at(rev: str, into: Path) -> Path:
    """bpf/ as it was at rev, written under into."""
    names = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", rev, "bpf/"], check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        data = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{name}"], check=True,
                              capture_output=True).stdout
        (into / Path(name).name).write_bytes(data)
    return into


def load(src: Path):
    """The blocking variant compiled from src: (maps, functions) with the stages and policy filled."""
    settings = bpf_program.PREPARED_SETTINGS["live --block"]
    program = bpf_program.compile_program(settings, kernel_headers.choose_headers(), src)
    maps, functions = bpf_program.load_into_kernel(program)
    for stage, name in bpf_program.STAGES.items():
        if name in functions:
            maps["stages"].update(stage, functions[name].fd)
    PolicyTables.build(parse_policy(POLICY), resolvers=[__import__("ipaddress").ip_address(RESOLVER)]).fill(maps, 1)
    JobScope.whole_host().fill(maps["job_scope"], 0)        # job 1: a test-run packet has no socket
    return maps, functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-rev", default="HEAD")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = load(sources_at(args.base_rev, Path(tmp)))
    work = load(bpf_program.source_dir())
    print(f"A = bpf/ at {args.base_rev}, B = the work tree; median ns per query over {args.rounds} rounds")
    for label, name in NAMES.items():
        frame = query(name)
        a, b = [], []
        for _ in range(args.rounds):
            a.append(ns_per_run(base[1]["ca_egress"].fd, frame, args.repeat))
            b.append(ns_per_run(work[1]["ca_egress"].fd, frame, args.repeat))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{label:34s} A {ma:6.0f} ns   B {mb:6.0f} ns   B/A {mb / ma:5.2f}")


if __name__ == "__main__":
    main()
