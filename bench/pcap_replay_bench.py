#!/usr/bin/env python3
"""`cicd-audit record --pcap` against tshark on the same capture, in alternated rounds.

    bench/pcap_replay_bench.py [--transactions N] [--rounds R] [--pcap FILE [-C]] [--candidate PYTHONPATH]...

Without --pcap it writes a DNS-heavy capture of its own (N query/answer pairs,
one connection each: the per-message path at its most expensive) to a
temporary directory. Each round times, one after the other, the recorder
(this tree), tshark reading the same file (`-q -z conv,udp`: every packet
dissected, nothing printed per packet) and, with --candidate (repeatable),
other builds of the recorder (a directory put first on PYTHONPATH, e.g. an
older release installed with `pip install --target`). This tree runs through
the venv's editable install, whose import hook costs start-up time: to compare
two builds, install both with `--target` and give both as candidates. -C
passes `-C` to the recorder (a capture with offloaded checksums, such as
../shared's dns2tcp_netrack: without it those packets are not analysed).
It prints each run's wall and CPU
time, the medians, and the ratios to tshark, and checks that every recorder
run wrote the same conn.log and dns.log rows (uids aside).

Needs root (the recorder loads its BPF program) and tshark. Attaches nothing
and sends no packet: `--pcap` replays the file through BPF_PROG_TEST_RUN.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_dns_capture(path: Path, transactions: int) -> None:
    """Classic pcap, Ethernet: N DNS query/answer pairs over UDP, each from its own source port."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 1_700_000_000.0
        for i in range(transactions):
            name = f"{i * 2654435761 % 2**40:010x}.t{i % 7}.example.com"
            port = 1024 + i % 60000
            eth_q = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            eth_a = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
            q = eth_q / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=port, dport=53) / DNS(
                id=i & 0xFFFF, rd=1, qd=DNSQR(qname=name))
            a = eth_a / IP(src="10.0.0.53", dst="10.0.0.1") / UDP(sport=53, dport=port) / DNS(
                id=i & 0xFFFF, qr=1, rd=1, ra=1, qd=DNSQR(qname=name),
                an=DNSRR(rrname=name, rdata=f"192.0.2.{i % 250}", ttl=60))
            for packet, ts in ((q, t), (a, t + 0.0004)):
                raw = bytes(packet)
                out.write(struct.pack("<IIII", int(ts), int(round(ts % 1 * 1e6)), len(raw), len(raw)) + raw)
            t += 0.001


def timed(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run; fails loudly if the run fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def rows(out: Path, name: str) -> list[str]:
    """A log's data rows without the uid column, sorted (uids are random)."""
    lines = [line.split("\t") for line in (out / f"{name}.log").read_text().splitlines() if not line.startswith("#")]
    return sorted("\t".join(fields[:1] + fields[2:]) for fields in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transactions", type=int, default=60000, help="DNS query/answer pairs in the generated capture")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pcap", type=Path, help="time this capture instead of a generated one")
    ap.add_argument("--candidate", metavar="PYTHONPATH", action="append", default=[],
                    help="also time the recorder found first on this path (repeatable)")
    ap.add_argument("-C", dest="no_checksums", action="store_true", help="pass -C: ignore bad checksums")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: the recorder loads its BPF program")
    work = Path(tempfile.mkdtemp(prefix="cicd-audit-pcap-bench-"))
    pcap = args.pcap
    if pcap is None:
        pcap = work / "dns.pcap"
        print(f"writing {args.transactions} DNS transactions to {pcap} ...", flush=True)
        write_dns_capture(pcap, args.transactions)
    record = [sys.executable, "-m", "cicd_audit.cli", "record", "--pcap", str(pcap), "--no-progress"]
    if args.no_checksums:
        record.append("-C")
    contenders = {"recorder": None, "tshark": None}
    for i, path in enumerate(args.candidate, 1):
        contenders[f"cand{i}" if len(args.candidate) > 1 else "candidate"] = {**os.environ, "PYTHONPATH": path}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    outputs = []
    for round_ in range(1, args.rounds + 1):
        for name, env in contenders.items():
            if name == "tshark":
                argv = ["tshark", "-n", "-r", str(pcap), "-q", "-z", "conv,udp"]
            else:
                out = work / f"out-{name}-{round_}"
                argv = record + ["--out", str(out)]
                outputs.append(out)
            wall, cpu = timed(argv, env)
            times[name].append((wall, cpu))
            print(f"round {round_} {name:9s} {wall:7.2f} s wall {cpu:7.2f} s CPU", flush=True)
    for name in ("conn", "dns"):
        if len({tuple(rows(out, name)) for out in outputs}) != 1:
            raise SystemExit(f"the recorder runs wrote different {name}.log rows")
    tshark = statistics.median(w for w, _ in times["tshark"])
    print(f"\n{pcap} ({pcap.stat().st_size / 1e6:.1f} MB), medians of {args.rounds} alternated rounds:")
    for name, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"  {name:9s} {wall:7.2f} s wall {cpu:7.2f} s CPU  ({wall / tshark:.1f}x tshark)")
    print(f"every recorder run wrote the same conn.log and dns.log rows; outputs in {work}")


if __name__ == "__main__":
    main()
