#!/usr/bin/env python3
"""The detection figures of docs/analyze.md: false positives, severity stability, evasion.

    python bench/detection_figures.py [--jobs 300] [--replays 50] [--big 1000000]

Pure (no root, no network). It uses the generators the tests use
(tests/analyze: ``benign_corpus``, ``evasion``, the stability test's jittered
replay of the demo's tunnel), at the sizes the issue asks for, and prints one
markdown table per figure:

1. False positives: findings at medium or above on ``--seeds`` generated
   corpora of real CI host-name shapes (``--jobs`` jobs each: buckets, tenant hashes, CDN
   keys, telemetry ids, registry mirrors, cluster-local names), and on the
   real Zeek benign dns.logs of ``../shared/dns-tunnel-data/benign``.
2. Severity stability: the demo's 30-query tunnel replayed ``--replays``
   times, from calm to very noisy timing: the severities seen.
3. Evasion: short-label channels (8-20 characters per label, hex and
   base32) carrying 1 KB, 10 KB and ``--big`` bytes: the severity of each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))         # the tests' generators (tests/analyze), not a copy of them

from analyze.benign_corpus import benign_frames  # noqa: E402
from analyze.evasion import short_label_names  # noqa: E402
from analyze.test_dns_tunnel import dns_frame  # noqa: E402
from analyze.test_severity_stability import conn_frame, demo_tunnel_names, jittered  # noqa: E402

from cicd_audit.analyzers import analyze, dns_tunnel, load_logs  # noqa: E402
from cicd_audit.analyzers.findings import at_or_above  # noqa: E402


def false_positives(jobs: int, seeds: int) -> list[str]:
    rows = ["| corpus | names | distinct | findings at medium+ | at low/info | seconds |", "|---|---|---|---|---|---|"]
    for seed in range(1, seeds + 1):
        t = time.monotonic()
        dns, conn = benign_frames(jobs, seed=seed)
        result = analyze({"dns": dns, "conn": conn})
        bad = at_or_above(result.findings, "medium")
        what = "".join(f"; {r.analyzer} {r.indicator}" for r in bad.itertuples())
        rows.append(f"| generated CI jobs ({jobs}, seed {seed}) | {len(dns):,} | {dns['query'].nunique():,} | "
                    f"{len(bad)}{what} | {len(result.findings) - len(bad)} | {time.monotonic() - t:.1f} |")
    benign = ROOT.parent / "shared" / "dns-tunnel-data" / "benign"
    for path in sorted(p for p in benign.iterdir() if ".log" in p.name):
        t = time.monotonic()
        with tempfile.TemporaryDirectory() as session:       # a session directory holding that dns.log
            os.symlink(path, Path(session) / ("dns.log.gz" if path.name.endswith(".gz") else "dns.log"))
            logs = load_logs(session)
        result = analyze(logs)
        bad = at_or_above(result.findings, "medium")
        rows.append(f"| `benign/{path.name}` (real Zeek) | {len(logs.dns):,} | {logs.dns['query'].nunique():,} | "
                    f"{len(bad)} | {len(result.findings) - len(bad)} | {time.monotonic() - t:.1f} |")
    return rows


def stability(replays: int) -> list[str]:
    names = demo_tunnel_names()
    rows = ["| conn.log | replays | timing_cv range | severities seen |", "|---|---|---|---|"]
    for with_conn in (False, True):
        severities, cvs = Counter(), []
        for seed in range(replays):
            d = jittered(names, seed, jitter=0.1 + 0.8 * seed / replays)     # calm to very noisy
            f = analyze({"dns": d, "conn": conn_frame() if with_conn else None}).findings
            f = f[f["analyzer"] == "dns_tunnel"]
            severities.update(str(s) for s in f["severity"]) if len(f) else severities.update(["none"])
            cvs += [e["timing_cv"] for e in f["evidence"]]
        seen = ", ".join(f"{s} x{n}" for s, n in severities.most_common())
        rows.append(f"| {'with' if with_conn else 'without'} | {replays} | {min(cvs):.2f}-{max(cvs):.2f} "
                    f"(threshold {dns_tunnel.MAX_TIMING_CV}) | {seen} |")
    return rows


def evasion(big: int) -> list[str]:
    rows = ["| encoding | label length | bytes | names | finding | encoded bytes seen | seconds |",
            "|---|---|---|---|---|---|---|"]
    for encoding in ("hex", "base32"):
        for label_len in (8, 12, 17, 20):
            for nbytes in (1_000, 10_000, big):
                t = time.monotonic()
                names = short_label_names(nbytes, label_len, encoding, seed=label_len)
                f = dns_tunnel.detect_dns_tunnels(dns_frame(names, answers=["192.0.2.9"], gap=0.7))
                f = f[f["indicator"] == "cdn-metrics.example"]
                verdict = str(f.iloc[0]["severity"]) if len(f) else "**none**"
                seen = f"{f.iloc[0]['evidence']['encoded_bytes']:,}" if len(f) else "-"
                rows.append(f"| {encoding} | {label_len} | {nbytes:,} | {len(names):,} | {verdict} | {seen} | "
                            f"{time.monotonic() - t:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300, help="generated benign CI jobs per corpus (default 300)")
    parser.add_argument("--seeds", type=int, default=3, help="generated corpora (default 3)")
    parser.add_argument("--replays", type=int, default=50, help="jittered replays of the demo tunnel (default 50)")
    parser.add_argument("--big", type=int, default=1_000_000, help="bytes of the largest evasion channel")
    args = parser.parse_args()
    for title, figure in (("False positives", lambda: false_positives(args.jobs, args.seeds)),
                          ("Severity stability", lambda: stability(args.replays)),
                          ("Evasion by short labels", lambda: evasion(args.big))):
        print(f"\n### {title}\n", flush=True)
        for row in figure():
            print(row, flush=True)


if __name__ == "__main__":
    main()
