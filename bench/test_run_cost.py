#!/usr/bin/env python3
"""Per-packet cost of the capture program in isolation, via BPF_PROG_TEST_RUN.

Runs a no-op TC program, the live-mode program, and the blocking-mode
program's egress entry (with a policy that allows the frames' destination,
so the connection is tracked and passed) on the same frames (repeat=N in the
kernel, so no syscall per packet) and prints nanoseconds per run,
alternating them round by round. A quick, quiet-machine check while changing the
kernel code; bench/record_bench.py measures the real thing on a veth flood.

    sudo python bench/test_run_cost.py [--rounds 5] [--repeat 200000]
    sudo python bench/test_run_cost.py --ab OLD/bpf NEW/bpf [--block] [--rounds 21] [--frames udp-64B,tcp-ack-1KB] [--loads 3]

--ab compares two copies of the bpf/ sources (e.g. one with a previous
commit's header): both live-mode programs run on the same frames (plain,
VLAN-tagged, QinQ), alternated round by round; it prints each one's median
above the no-op and the ratio NEW/OLD. A baseline from before tunnels (no
ca_decap, which today's loader requires) loads too. --frames runs only the
frames named; --loads N loads each program N times and takes the loads in turn
(where one load lands moves its time by 1-2 %).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import struct
from pathlib import Path

from scapy.all import IP, TCP, UDP, Ether, Raw

from cicd_audit.policy import parse_policy
from cicd_audit.recorder.attach.job_scope import JobScope
from cicd_audit.recorder.kernel import abi, kernel_headers
from cicd_audit.recorder.kernel import packet_runner as tr
from cicd_audit.recorder.kernel.block_tables import PolicyTables
from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings, import_bcc

NOOP = b"#include <uapi/linux/pkt_cls.h>\nint noop(struct __sk_buff *skb) { return TC_ACT_OK; }\n"

FRAMES = {
    "udp-64B": bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=5201) / Raw(b"x" * 22)),
    "tcp-ack-1KB": bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2")
                         / TCP(sport=40000, dport=5201, flags="A", seq=1000, ack=1) / Raw(b"x" * 1000)),
}

# The answers: the key's endpoints are swapped into canonical order (the same connection).
REPLY_FRAMES = {
    "udp-64B-reply": bytes(Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=5201, dport=40000)
                           / Raw(b"x" * 22)),
    "tcp-ack-1KB-reply": bytes(Ether() / IP(src="10.0.0.2", dst="10.0.0.1")
                               / TCP(sport=5201, dport=40000, flags="A", seq=1, ack=2000) / Raw(b"x" * 1000)),
}

# A tunnel's packet costs its outer packet, the ca_decap stage and the inner packet (bpf/tunnel.h).
_VXLAN_HDR = struct.pack("!BBHI", 0x08, 0, 0, 42 << 8)
TUNNEL_FRAMES = {
    "vxlan-udp-64B": bytes(Ether() / IP(src="10.200.0.1", dst="10.200.0.2") / UDP(sport=50000, dport=4789)
                           / Raw(_VXLAN_HDR + FRAMES["udp-64B"])),
    "gre-udp-64B": bytes(Ether() / IP(src="10.200.0.1", dst="10.200.0.2", proto=47)
                         / Raw(struct.pack("!HH", 0, 0x0800) + FRAMES["udp-64B"][14:])),
}


def judge_whole_host(maps) -> None:
    """Blocking with the whole host as job 1 (a test-run packet has no socket) and its policy."""
    if maps["allow_cidrs"].spec.key_size == _ONE_JOB_CIDR_KEY_SIZE:
        _judge_whole_host_one_job(maps)
        return
    PolicyTables.build(parse_policy("allowed:\n  cidrs: [10.0.0.0/8]\n")).fill(maps, 1)
    JobScope.whole_host().fill(maps["job_scope"], 0)


# Sources from before per-job slots (an --ab baseline) key allow_cidrs by prefix and address
# only, and their all-zero job scope is the whole host.
_ONE_JOB_CIDR_KEY_SIZE = 20


def _judge_whole_host_one_job(maps) -> None:
    key = (96 + 8).to_bytes(4, "little") + bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 0])
    maps["allow_cidrs"].update(key, bytes(abi.PortSet(any=1)))


def ns_per_run(prog_fd: int, frame: bytes, repeat: int) -> int:
    ctx = ctypes.create_string_buffer(tr.SKB_CTX_SIZE)
    data = ctypes.create_string_buffer(frame, len(frame))
    attr = tr._TestAttr(prog_fd=prog_fd, data_size_in=len(frame), data_in=ctypes.addressof(data), repeat=repeat,
                        ctx_size_in=tr.SKB_CTX_SIZE, ctx_in=ctypes.addressof(ctx))
    if tr._libc.syscall(tr.SYS_BPF, tr.BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        raise OSError(ctypes.get_errno(), "BPF_PROG_TEST_RUN failed")
    return attr.duration


def _vlan(frame: bytes, *tags: int) -> bytes:
    return frame[:12] + b"".join(struct.pack("!HH", tpid, 10) for tpid in tags) + frame[12:]


def _has_function(src: str, name: str) -> bool:
    return f"int {name}(" in (Path(src) / "capture.bpf.c").read_text()


def ab(noop_fd: int, old_dir: str, new_dir: str, rounds: int, repeat: int, block: bool = False,
       only: list[str] | None = None, loads: int = 1) -> None:
    """The live-mode program (with block: the blocking variant, a CIDR policy, every packet
    judged) compiled from two source directories, alternated. Each is loaded `loads` times
    and round i runs load i % loads of both: where the kernel happens to place a load (its
    JIT image, its map's entry) moves one load's time by a per cent or two, which
    alternating rounds cannot average out but several loads do."""
    programs = {"old": [_load_live(old_dir, block, again=i > 0) for i in range(loads)],
                "new": [_load_live(new_dir, block, again=i > 0) for i in range(loads)]}
    frames = dict(FRAMES)
    for name, frame in FRAMES.items():
        frames[name + "-vlan"] = _vlan(frame, 0x8100)
        frames[name + "-qinq"] = _vlan(frame, 0x88A8, 0x8100)
    frames.update(REPLY_FRAMES)
    frames.update(TUNNEL_FRAMES)
    if only:
        frames = {name: frames[name] for name in only}
    for name, frame in frames.items():
        base, old, new = [], [], []
        for i in range(rounds):
            base.append(ns_per_run(noop_fd, frame, repeat))
            order = ("old", "new") if i % 2 == 0 else ("new", "old")
            for label in order:
                fd = programs[label][i % loads].egress_fn.fd
                (old if label == "old" else new).append(ns_per_run(fd, frame, repeat))
        b, o, n = statistics.median(base), statistics.median(old), statistics.median(new)
        ratios = sorted(y / x for x, y in zip(old, new))
        print(f"{name:18s} no-op {b:4.0f} ns   old {o:5.0f} ns ({o - b:+4.0f})   new {n:5.0f} ns ({n - b:+4.0f})   "
              f"new/old median {statistics.median(ratios):.3f} (range {ratios[0]:.3f}..{ratios[-1]:.3f})"
              f"   fastest tenth {_tenth(new) / _tenth(old):.3f}")


def _tenth(times: list[int]) -> float:
    """The 10th percentile: a run the machine disturbed least (steal, interrupts only add time)."""
    return sorted(times)[len(times) // 10]


def _load_live(src: str, block: bool, again: bool = False) -> CaptureProgram:
    """The live-mode program compiled from the bpf/ sources in src (again: loaded again,
    from the program cache that the first load's compile filled)."""
    from cicd_audit.recorder.kernel import bpf_program
    real_source_dir, real_functions = bpf_program.source_dir, bpf_program.FUNCTIONS
    bpf_program.source_dir = lambda: Path(src).resolve()
    if not _has_function(src, "ca_decap"):     # sources from before tunnels
        bpf_program.FUNCTIONS = tuple(f for f in real_functions if f != "ca_decap")
    try:
        program = CaptureProgram(ProgramSettings(pcap_mode=False, attribution=True, block=block),
                                 lambda data, size: None, use_cache=again)
    finally:
        bpf_program.source_dir, bpf_program.FUNCTIONS = real_source_dir, real_functions
    if block:
        judge_whole_host(program.maps)
    return program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=200_000)
    parser.add_argument("--block", action="store_true", help="with --ab: compare the blocking variants")
    parser.add_argument("--ab", nargs=2, metavar=("OLD_BPF_DIR", "NEW_BPF_DIR"),
                        help="compare the programs compiled from two bpf/ source directories")
    parser.add_argument("--loads", type=int, default=1,
                        help="with --ab: load each program this many times, rounds taking them in turn")
    parser.add_argument("--frames", type=lambda text: text.split(","),
                        help="with --ab: only these frames (comma-separated names as printed)")
    args = parser.parse_args()
    bcc = import_bcc()
    headers = kernel_headers.choose_headers()
    if headers.source:
        os.environ["BCC_KERNEL_SOURCE"] = str(headers.source)
    noop = bcc.BPF(text=NOOP).load_func(b"noop", bcc.BPF.SCHED_CLS)
    if args.ab:
        ab(noop.fd, args.ab[0], args.ab[1], args.rounds, args.repeat, block=args.block, only=args.frames,
           loads=args.loads)
        return
    ours = CaptureProgram(ProgramSettings(pcap_mode=False, attribution=True), lambda data, size: None)
    blocking = CaptureProgram(ProgramSettings(pcap_mode=False, attribution=True, block=True),
                              lambda data, size: None)
    judge_whole_host(blocking.maps)
    for name, frame in {**FRAMES, **TUNNEL_FRAMES}.items():
        base, mine, block = [], [], []
        for _ in range(args.rounds):
            base.append(ns_per_run(noop.fd, frame, args.repeat))
            mine.append(ns_per_run(ours.egress_fn.fd, frame, args.repeat))
            block.append(ns_per_run(blocking.egress_fn.fd, frame, args.repeat))
        b, m, k = statistics.median(base), statistics.median(mine), statistics.median(block)
        print(f"{name:14s} no-op {b:5.0f} ns   record {m:5.0f} ns ({m - b:+4.0f})   "
              f"record --block {k:5.0f} ns ({k - b:+4.0f})")


if __name__ == "__main__":
    main()
