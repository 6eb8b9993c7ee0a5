#!/usr/bin/env python3
"""Replaying a capture through the kernel program: BPF_PROG_TEST_RUN per frame against
frames sent in batches into a veth, with the same program at TC.

    sudo python bench/replay_paths.py [--pcap FILE] [--transactions N] [--rounds R] [--batch B]

`record --pcap` runs each frame through the pcap program with one
BPF_PROG_TEST_RUN, the capture time in the test skb's tstamp: one syscall a
frame. The alternative measured here keeps the same program and the same
kernel code path up to TC: the frames go out of a packet socket with
sendmmsg, B a call, into one end of a veth pair in a network namespace this
script creates, where the program is attached at TC egress; each frame's
capture time rides in skb->tstamp through SO_TXTIME (a cmsg per frame).

Per path and round (alternated; a fresh program each time): the process's CPU
time (user and system: the program runs inside the syscalls) per frame, the
program's own run time per frame (kernel.bpf_stats_enabled), and what the
program counted and a digest of the ring records it wrote (their kernel
timestamps included), which must be equal on both paths. The records are read
only after the timing: this is the kernel step alone, the
part of `record --pcap` a faster replay could change (bench/message_cost.py
measures the handling, bench/pcap_replay_bench.py the whole).

Needs root. Frames go only to the veth pair inside the script's own namespace,
which is deleted at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
SO_TXTIME = SCM_TXTIME = 61
CLOCK_MONOTONIC = 1
ETH_P_ALL = 0x0003
SENDER, PEER = "rp-send", "rp-peer"


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


_CMSG = struct.Struct("=QiiQ")       # cmsg_len, cmsg_level, cmsg_type, then the u64 transmit time
_libc = ctypes.CDLL(None, use_errno=True)


def frames_of(pcap: Path) -> list[tuple[int, bytes]]:
    """(capture time in ns, Ethernet frame) for each frame, as record --pcap hands them over."""
    from cicd_audit.recorder.drivers import linktypes
    from cicd_audit.recorder.drivers.capture_file import CaptureFile
    from cicd_audit.recorder.drivers.replay_loop import as_zeek_reads_it

    out = []
    with CaptureFile(pcap) as reader:
        for frame in reader:
            ether = linktypes.to_ethernet(frame.linktype, frame.data)
            if ether is not None and len(ether) >= 14:
                out.append((as_zeek_reads_it(frame.ts_ns), ether))
    return out


def program_stats(program) -> dict:
    """What the program counted, and its own run time (every function it runs in, tail calls included)."""
    from cicd_audit.recorder.kernel import bpf_syscall

    info = bpf_syscall.prog_info(program.packet_fn.fd)
    text = Path(f"/proc/self/fdinfo/{program.packet_fn.fd}").read_text()
    fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
    stats = {k: v for k, v in program.stats().items() if v}
    return {"run_time_ns": int(fields.get("run_time_ns", 0)), "run_cnt": int(fields.get("run_cnt", 0)),
            "prog_id": info.id, "counted": stats}


def by_test_run(program, frames, batch: int) -> None:
    from cicd_audit.recorder.kernel.packet_runner import PacketRunner

    runner = PacketRunner(program.packet_fn.fd)
    yield                                          # set up: the timing starts here
    for ts_ns, frame in frames:
        runner.run(frame, ts_ns, mark=len(frame))


def by_packet_socket(program, frames, batch: int) -> None:
    """sendmmsg B frames a call; each message one iovec and one SCM_TXTIME cmsg."""
    from cicd_audit.recorder.attach.attach import TcAttachment

    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock, \
            TcAttachment([SENDER], program.packet_fn.fd, mechanism="tc"):
        sock.setsockopt(socket.SOL_SOCKET, SO_TXTIME, struct.pack("=iI", CLOCK_MONOTONIC, 0))
        sock.bind((SENDER, 0))
        msgs, iovs = (_Mmsghdr * batch)(), (_Iovec * batch)()
        control = ctypes.create_string_buffer(_CMSG.size * batch)
        stride = max(len(f) for _, f in frames)
        data = ctypes.create_string_buffer(stride * batch)
        for i in range(batch):
            msgs[i].hdr.iov, msgs[i].hdr.iovlen = ctypes.addressof(iovs[i]), 1
            msgs[i].hdr.control = ctypes.addressof(control) + i * _CMSG.size
            msgs[i].hdr.controllen = _CMSG.size
        yield                                      # set up: the timing starts here
        for start in range(0, len(frames), batch):
            chunk = frames[start:start + batch]
            for i, (ts_ns, frame) in enumerate(chunk):
                ctypes.memmove(ctypes.addressof(data) + i * stride, frame, len(frame))
                iovs[i].base, iovs[i].len = ctypes.addressof(data) + i * stride, len(frame)
                _CMSG.pack_into(control, i * _CMSG.size, _CMSG.size, socket.SOL_SOCKET, SCM_TXTIME, ts_ns)
            sent = 0
            while sent < len(chunk):
                n = _libc.sendmmsg(sock.fileno(), ctypes.byref(msgs, sent * ctypes.sizeof(_Mmsghdr)),
                                   len(chunk) - sent, 0)
                if n < 0:
                    raise OSError(ctypes.get_errno(), f"sendmmsg: {os.strerror(ctypes.get_errno())}")
                sent += n


PATHS = {"test_run": by_test_run, "packet_socket": by_packet_socket}


def one_run(pcap: Path, path: str, batch: int) -> dict:
    """In the namespace: a fresh pcap program, every frame through it by one path, timed
    from the end of the path's set-up (a generator: it yields once when set up)."""
    from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings

    os.sched_setaffinity(0, {0})       # one CPU for every run: a connection's id carries the CPU's number
    frames = frames_of(pcap)
    records = hashlib.sha256()

    def keep(data, size):          # after the timing: every ring record, its kernel timestamp included
        records.update(ctypes.string_at(data, size) if isinstance(data, int) else bytes(data[:size]))

    program = CaptureProgram(ProgramSettings(pcap_mode=True), keep)
    try:
        steps = PATHS[path](program, frames, batch)
        next(steps)
        before = program_stats(program)
        cpu, wall = time.process_time(), time.monotonic()
        for _ in steps:
            pass
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        after = program_stats(program)
        program.poll()
    finally:
        program.close()
    return {"path": path, "frames": len(frames), "cpu_s": cpu, "wall_s": wall,
            "prog_ns": after["run_time_ns"] - before["run_time_ns"], "prog_runs": after["run_cnt"] - before["run_cnt"],
            "counted": after["counted"], "records": records.hexdigest()[:16]}


def run_in_netns(ns: str, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", *argv], capture_output=True, text=True, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", type=Path, help="a capture (default: a generated DNS capture)")
    ap.add_argument("--transactions", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64, help="frames per sendmmsg call")
    ap.add_argument("--one", nargs=2, metavar=("PCAP", "PATH"), help=argparse.SUPPRESS)   # internal
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(Path(args.one[0]), args.one[1], args.batch)))
        return 0
    if os.geteuid() != 0:
        print("replay_paths: needs root (a network namespace, BPF)", file=sys.stderr)
        return 2
    ns = f"cicd-audit-replay-{os.getpid()}"
    stats_before = STATS.read_text().strip()
    with tempfile.TemporaryDirectory(prefix="cicd-audit-replay-") as work:
        pcap = args.pcap
        if pcap is None:
            sys.path.insert(0, str(HERE))
            from pcap_replay_bench import write_dns_capture
            pcap = Path(work) / "dns.pcap"
            write_dns_capture(pcap, args.transactions)
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            # Nothing of the kernel's own may leave the sender (IPv6 router solicitations, MLD).
            run_in_netns(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                              "net.ipv6.conf.default.disable_ipv6=1"])
            run_in_netns(ns, ["ip", "link", "add", SENDER, "mtu", "9000", "type", "veth", "peer", "name", PEER,
                              "mtu", "9000"])
            for dev in (SENDER, PEER, "lo"):
                run_in_netns(ns, ["ip", "link", "set", dev, "up"])
            STATS.write_text("1")
            results: dict[str, list[dict]] = {path: [] for path in PATHS}
            for r in range(args.rounds):
                for path in (results if r % 2 == 0 else reversed(list(results))):
                    out = run_in_netns(ns, [sys.executable, __file__, "--batch", str(args.batch),
                                            "--one", str(pcap), path]).stdout
                    run = json.loads(out)
                    results[path].append(run)
                    print(f"round {r + 1} {path:13}: {run['cpu_s'] / run['frames'] * 1e6:6.2f} us CPU a frame, "
                          f"program {run['prog_ns'] / max(run['prog_runs'], 1):6.0f} ns a run "
                          f"({run['prog_runs']} runs), counted {run['counted']}, records {run['records']}", flush=True)
        finally:
            STATS.write_text(stats_before)
            subprocess.run(["ip", "netns", "del", ns], check=False)
    first = results["test_run"][0]
    same = all((run["counted"], run["records"]) == (first["counted"], first["records"])
               for runs in results.values() for run in runs)
    print(f"\nframes: {first['frames']}; every run counted the same and put the same ring records "
          f"(timestamps included) out: {same}")
    for path, runs in results.items():
        per = [run["cpu_s"] / run["frames"] * 1e6 for run in runs]
        prog = [run["prog_ns"] / max(run["prog_runs"], 1) for run in runs]
        print(f"{path:13}: median {statistics.median(per):.2f} us CPU a frame (rounds {min(per):.2f}-{max(per):.2f}), "
              f"program {statistics.median(prog):.0f} ns a run")
    ratio = [p["cpu_s"] / t["cpu_s"] for p, t in zip(results["packet_socket"], results["test_run"])]
    print(f"packet socket / test run, CPU per round: median {statistics.median(ratio):.2f} "
          f"({', '.join(f'{x:.2f}' for x in ratio)})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
