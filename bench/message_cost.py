#!/usr/bin/env python3
"""User-space cost per DNS message: the recorder's handlers alone, compiled parts against pure Python.

    sudo python bench/message_cost.py [--pcap FILE [-C]] [--transactions N] [--rounds R] [--candidate DIR]...

First the capture (default: N generated query/answer pairs, one connection
each, as bench/pcap_replay_bench.py writes them) is recorded once with
`record --pcap`'s own code, keeping every ring-buffer record the kernel
program produced. Then each round hands those records to a fresh SessionLog
(decode, DNS parse and pairing, conn.log and dns.log rows, written to a
temporary directory), in a new process, once with the compiled modules and
once with CICD_AUDIT_PURE_PYTHON=1, and once per --candidate (another build
installed with `pip install --no-deps --target DIR`, put first on PYTHONPATH),
alternated. Per run: the CPU time of the
handling (process time, no BPF, no packet), per DNS message and per event.
This is what a live recorder spends per message beside a busy job (the
kernel's share is measured by bench/record_bench.py).

Needs root for the one recording (BPF_PROG_TEST_RUN); attaches nothing.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def capture_records(pcap: Path, into: Path, validate_checksums: bool) -> None:
    """Record pcap once, keeping every ring-buffer record handed to the session."""
    from cicd_audit.recorder.drivers import pcap_replay
    from cicd_audit.recorder.logs.session import SessionLog

    records = []
    handle = SessionLog.on_event

    def keep(self, data, size):
        records.append(ctypes.string_at(data, size) if isinstance(data, int) else bytes(data[:size]))
        handle(self, data, size)

    SessionLog.on_event = keep
    try:
        with tempfile.TemporaryDirectory(prefix="cicd-audit-msgcost-") as out:
            pcap_replay.record_pcap(pcap, Path(out), validate_checksums=validate_checksums, progress=False)
    finally:
        SessionLog.on_event = handle
    into.write_bytes(pickle.dumps(records))


def handle_records(path: Path) -> dict:
    """One timed run (in this process): every record through a fresh session."""
    from cicd_audit.recorder.logs.session import SessionLog
    try:
        from cicd_audit import compiled
        pure_python = sorted(compiled.unavailable())
    except ImportError:         # a candidate from before the compiled parts
        pure_python = ["all (a build without compiled parts)"]

    try:
        from cicd_audit.recorder.drivers.gc_pacing import pace_for_events
    except ImportError:         # a candidate from before the cycle collector was paced
        def pace_for_events():
            pass

    records = pickle.loads(path.read_bytes())
    with tempfile.TemporaryDirectory(prefix="cicd-audit-msgcost-") as out:
        session = SessionLog(Path(out), "tsv", to_epoch=lambda ns: ns / 1e9)
        pace_for_events()       # as a recording does once its program is loaded
        start = time.process_time()
        for record in records:
            session.on_event(record, len(record))
        session.flush()
        spent = time.process_time() - start
        stats = session.close({}, "bench", 0.0)
    return {"cpu_s": spent, "events": len(records), "dns_messages": stats.get("dns_messages", 0),
            "dns_rows": stats.get("dns_rows", 0), "pure_python": pure_python}


def per_message_us(run: dict) -> float:
    return run["cpu_s"] / max(run["dns_messages"], 1) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", type=Path, help="a capture to record (default: a generated DNS capture)")
    ap.add_argument("-C", dest="no_checksums", action="store_true", help="ignore bad checksums (offloaded capture)")
    ap.add_argument("--transactions", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--candidate", metavar="DIR", action="append", default=[],
                    help="also time this build (a `pip install --no-deps --target DIR` of it); repeatable")
    ap.add_argument("--handle", type=Path, help=argparse.SUPPRESS)     # internal: one timed run
    args = ap.parse_args()
    if args.handle:
        print(json.dumps(handle_records(args.handle)))
        return

    with tempfile.TemporaryDirectory(prefix="cicd-audit-msgcost-") as work:
        work = Path(work)
        pcap = args.pcap
        if pcap is None:
            sys.path.insert(0, str(HERE))
            from pcap_replay_bench import write_dns_capture
            pcap = work / "dns.pcap"
            write_dns_capture(pcap, args.transactions)
        records = work / "records.pickle"
        capture_records(pcap, records, not args.no_checksums)
        modes = {"compiled": {"CICD_AUDIT_PURE_PYTHON": "0"}, "pure": {"CICD_AUDIT_PURE_PYTHON": "1"}}
        for i, directory in enumerate(args.candidate, 1):
            modes[f"cand{i}"] = {"CICD_AUDIT_PURE_PYTHON": "0", "PYTHONPATH": str(Path(directory).resolve())}
        results = {m: [] for m in modes}
        for r in range(args.rounds):
            order = list(modes) if r % 2 == 0 else list(reversed(modes))
            for mode in order:
                env = dict(os.environ, **modes[mode])
                out = subprocess.run([sys.executable, __file__, "--handle", str(records)], env=env,
                                     capture_output=True, text=True, check=True).stdout
                run = json.loads(out)
                if mode in ("compiled", "pure") and (mode == "pure") != bool(run["pure_python"]):
                    sys.exit(f"message_cost: the {mode} run had compiled modules off: {run['pure_python'] or 'none'}")
                results[mode].append(run)
                print(f"round {r + 1} {mode:8s} {run['cpu_s']:.3f} s CPU, {run['events']} events, "
                      f"{run['dns_messages']} DNS messages: {per_message_us(run):.1f} us per message", flush=True)
        per = {m: statistics.median(per_message_us(x) for x in runs) for m, runs in results.items()}
        print("median per DNS message: " + ", ".join(f"{m} {us:.1f} us" for m, us in per.items()))
        for mode in [m for m in modes if m != "compiled"]:
            ratios = [c["cpu_s"] / o["cpu_s"] for c, o in zip(results["compiled"], results[mode])]
            print(f"per-round ratio compiled/{mode}: median {statistics.median(ratios):.3f} "
                  f"(range {min(ratios):.3f}-{max(ratios):.3f})")

if __name__ == "__main__":
    main()
