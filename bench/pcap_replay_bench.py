#!/usr/bin/env python3
"""`cicd-audit record --pcap` against tshark on the same capture, in alternated rounds.

    bench/pcap_replay_bench.py [--workload dns|tcp] [--transactions N] [--segments N] [--rounds R]
                               [--pcap FILE [-C]] [--tshark-stat conv,tcp] [--candidate PYTHONPATH]...

Without --pcap it writes a capture of its own to a temporary directory:
`--workload dns` (the default), N DNS query/answer pairs, one connection each:
the per-message path at its most expensive; `--workload tcp`, bulk TCP: ten
connections of full-size segments (1,448 bytes of payload, an ACK every
second segment; --segments in all), where a frame seldom makes an event and
the per-frame path is all there is. Each round times, one after the other,
the recorder (this tree), tshark reading the same file (`-q -z conv,udp`, or
conv,tcp for the TCP workload: every packet dissected, nothing printed per
packet) and, with --candidate (repeatable),
other builds of the recorder (a directory put first on PYTHONPATH, e.g. an
older release installed with `pip install --target`). This tree runs through
the venv's editable install, whose import hook costs start-up time: to compare
two builds, install both with `--target` and give both as candidates. -C
passes `-C` to the recorder (a capture with offloaded checksums, such as
../shared's dns2tcp_netrack: without it those packets are not analysed).
It prints each run's wall and CPU
time, the medians, the ratios to tshark and the recorder's frames a second:
over the whole wall time, and after start-up (each round also times the
recorder on the capture's first record alone), and checks that every recorder
run wrote the same conn.log and dns.log rows (uids aside). Each build runs
once, untimed, before the first round, so a program it has not compiled yet
is compiled there.

Needs root (the recorder loads its BPF program) and tshark (with capinfos and
editcap). Attaches nothing and sends no packet: `--pcap` replays the file
through BPF_PROG_TEST_RUN.
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


def write_bulk_tcp_capture(path: Path, segments: int, connections: int = 10) -> None:
    """Classic pcap, Ethernet: bulk TCP to port 445, `segments` full-size data segments in all over
    `connections` connections (handshake, data with an ACK every second segment, FIN exchange), 10 us apart.
    Checksums are computed, so the recorder needs no -C."""
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    mac_a, mac_b = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
    payload = bytes(i * 7 & 0xFF for i in range(1448))
    t_us = 1_700_000_000 * 1_000_000

    def write(out, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, data=b""):
        nonlocal t_us
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(data))
        tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp + data)) + tcp[18:] + data
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), t_us & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frame = (mac_b if src == a else mac_a) + (mac_a if src == a else mac_b) + b"\x08\x00" + ip + tcp
        out.write(struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, len(frame), len(frame)) + frame)
        t_us += 10

    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for c in range(connections):
            port, seq, rseq = 40000 + c, 1000, 5000
            write(out, a, b, port, 445, seq, 0, 0x02)
            write(out, b, a, 445, port, rseq, seq + 1, 0x12)
            seq += 1
            write(out, a, b, port, 445, seq, rseq + 1, 0x10)
            for i in range(segments // connections):
                write(out, a, b, port, 445, seq, rseq + 1, 0x18 if i % 2 else 0x10, payload)
                seq += len(payload)
                if i % 2:
                    write(out, b, a, 445, port, rseq + 1, seq, 0x10)
            write(out, a, b, port, 445, seq, rseq + 1, 0x11)
            write(out, b, a, 445, port, rseq + 1, seq + 1, 0x11)
            write(out, a, b, port, 445, seq + 1, rseq + 2, 0x10)


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    from cicd_audit.recorder.logs.fragments import ones_complement_sum

    return ~ones_complement_sum(data) & 0xFFFF


def frames_in(pcap: Path) -> int:
    """Packet records in a capture (capinfos, which reads pcap and pcapng)."""
    out = subprocess.run(["capinfos", "-c", "-M", str(pcap)], capture_output=True, text=True, check=True).stdout
    return int(out.rsplit(":", 1)[1])


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
    ap.add_argument("--workload", choices=("dns", "tcp"), default="dns", help="the capture to generate")
    ap.add_argument("--transactions", type=int, default=60000, help="DNS query/answer pairs in the generated capture")
    ap.add_argument("--segments", type=int, default=400000, help="TCP data segments in the generated bulk capture")
    ap.add_argument("--tshark-stat", help="tshark's -z statistic (default conv,udp; conv,tcp for --workload tcp)")
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
    if pcap is None and args.workload == "tcp":
        pcap = work / "bulk-tcp.pcap"
        print(f"writing {args.segments} bulk TCP segments to {pcap} ...", flush=True)
        write_bulk_tcp_capture(pcap, args.segments)
    elif pcap is None:
        pcap = work / "dns.pcap"
        print(f"writing {args.transactions} DNS transactions to {pcap} ...", flush=True)
        write_dns_capture(pcap, args.transactions)
    stat = args.tshark_stat or ("conv,tcp" if args.workload == "tcp" and args.pcap is None else "conv,udp")
    frames = frames_in(pcap)
    first = work / "first-record.pcap"          # start-up alone: the capture's first record
    subprocess.run(["editcap", "-r", str(pcap), str(first), "1"], check=True, capture_output=True)
    record = [sys.executable, "-m", "cicd_audit.cli", "record", "--no-progress"] + (["-C"] if args.no_checksums else [])
    contenders = {"recorder": None, "tshark": None}
    for i, path in enumerate(args.candidate, 1):
        contenders[f"cand{i}" if len(args.candidate) > 1 else "candidate"] = {**os.environ, "PYTHONPATH": path}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    startup: dict[str, list[float]] = {name: [] for name in contenders if name != "tshark"}
    outputs = []
    # Untimed, once per build: a program not yet in the cache is compiled here, not in a timed run
    # (it once made a start-up run longer than the whole replay of its round).
    for name, env in contenders.items():
        if name != "tshark":
            subprocess.run(record + ["--pcap", str(first), "--out", str(work / f"warm-up-{name}")], env=env,
                           check=True, capture_output=True)
    for round_ in range(1, args.rounds + 1):
        for name, env in contenders.items():
            if name == "tshark":
                argv = ["tshark", "-n", "-r", str(pcap), "-q", "-z", stat]
            else:
                out = work / f"out-{name}-{round_}"
                argv = record + ["--pcap", str(pcap), "--out", str(out)]
                outputs.append(out)
                startup[name].append(timed(record + ["--pcap", str(first), "--out", str(out) + "-first"], env)[0])
            wall, cpu = timed(argv, env)
            times[name].append((wall, cpu))
            print(f"round {round_} {name:9s} {wall:7.2f} s wall {cpu:7.2f} s CPU", flush=True)
    for name in ("conn", "dns"):
        if len({tuple(rows(out, name)) for out in outputs}) != 1:
            raise SystemExit(f"the recorder runs wrote different {name}.log rows")
    tshark = statistics.median(w for w, _ in times["tshark"])
    print(f"\n{pcap} ({pcap.stat().st_size / 1e6:.1f} MB, {frames} frames), medians of {args.rounds} alternated rounds:")
    for name, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"  {name:9s} {wall:7.2f} s wall {cpu:7.2f} s CPU  ({wall / tshark:.2f}x tshark, "
              f"{frames / wall:,.0f} frames/s)")
        if name in startup and wall > 2 * statistics.median(startup[name]):   # else start-up is most of it
            rates = sorted(frames / (w - s) for (w, _), s in zip(runs, startup[name]))
            print(f"  {'':9s} start-up {statistics.median(startup[name]):.2f} s (a one-record file); after it, "
                  f"{statistics.median(rates):,.0f} frames/s ({rates[0]:,.0f}-{rates[-1]:,.0f})")
    builds = [name for name in times if name != "tshark"]
    for base in builds[:2]:             # this tree and the first candidate, against each later build
        for name in builds[builds.index(base) + 1:]:
            ratios = sorted(w / w_base for (w, _), (w_base, _) in zip(times[name], times[base]))
            print(f"  {name} / {base}, wall per round: median {statistics.median(ratios):.2f} "
                  f"({ratios[0]:.2f}-{ratios[-1]:.2f})")
    print(f"every recorder run wrote the same conn.log and dns.log rows; outputs in {work}")


if __name__ == "__main__":
    main()
