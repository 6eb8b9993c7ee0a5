#!/usr/bin/env python3
"""Benchmark `cicd-audit analyze` on 1,000,000 dns.log rows plus 1,000,000 conn.log rows.

Usage:
    python bench/analyze_bench.py [--rows 1000000] [--dir /tmp/cicd-audit-bench] [--regen] [--policy FILE]
    python bench/analyze_bench.py --detection [--shared ../shared]   # precision/recall (records pcaps: root)

What it does: generates (once, cached in --dir) a session whose dns.log and
conn.log have --rows rows each, in Zeek TSV with the headers our writer emits,
shaped like a busy CI runner: ordinary registry/CDN lookups repeated by many
jobs, random-label CDN cache keys, search-domain NXDOMAIN noise, and two DNS
tunnels (a bulk base32 TXT tunnel with 100,000 distinct names and a slow
hex drip). Then it runs load + analyze (as the command does: ``load_for_analysis``)
in a fresh child process and reports
wall time per phase and the child's peak RSS (ru_maxrss). The goal for the
issue is <= 15 s and <= 2 GB for the whole run.

Rows are written with vectorised pandas, not LogWriter, so generation takes
seconds; the header is the writer's own (``tsv_header``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

GOAL_SECONDS = 15.0
GOAL_BYTES = 2 * 1024**3

CI_NAMES = [
    "github.com", "api.github.com", "codeload.github.com", "objects.githubusercontent.com", "raw.githubusercontent.com",
    "pipelines.actions.githubusercontent.com", "results-receiver.actions.githubusercontent.com", "ghcr.io",
    "pkg-containers.githubusercontent.com", "productionresultssa12.blob.core.windows.net", "pypi.org",
    "files.pythonhosted.org", "registry.npmjs.org", "registry-1.docker.io", "auth.docker.io",
    "production.cloudflare.docker.com", "repo.maven.apache.org", "proxy.golang.org", "sum.golang.org",
    "storage.googleapis.com", "static.crates.io", "index.crates.io", "rubygems.org", "archive.ubuntu.com",
    "security.ubuntu.com", "azure.archive.ubuntu.com", "o450832.ingest.sentry.io", "d31qbv1cthcecs.cloudfront.net",
    "codecov.io", "dl.google.com", "deb.debian.org", "packages.microsoft.com",
]


def _addr(i):
    i = np.asarray(i, dtype=np.int64)
    return (
        pd.Series(20 + i % 200).astype(str) + "." + pd.Series((i // 200) % 250 + 1).astype(str) + "."
        + pd.Series((i // 50000) % 250 + 1).astype(str) + "." + pd.Series(i % 249 + 2).astype(str)
    ).to_numpy(dtype=object)


def generate(directory: str, rows: int, seed: int = 1) -> None:
    from cicd_audit.zeeklog.schema import load_schema
    from cicd_audit.zeeklog.writer import tsv_header

    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    t0 = 1_760_000_000.0
    span = 8 * 3600.0

    # ---- dns.log
    n_tunnel = rows // 10  # bulk TXT tunnel: 100k distinct names
    n_drip = 200  # slow hex drip
    n_cdn = rows // 20  # random-label CDN cache keys
    n_search = rows // 20  # search-domain NXDOMAIN noise
    n_ci = rows - n_tunnel - n_drip - n_cdn - n_search
    ci_idx = rng.integers(0, len(CI_NAMES), n_ci)
    ci_names = np.asarray(CI_NAMES, dtype=object)[ci_idx]
    b32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", dtype=np.uint8)
    tun = b32[rng.integers(0, 32, (n_tunnel, 60))].view("S60").ravel().astype(str).astype(object)
    tun_names = tun + "." + np.arange(n_tunnel).astype(str).astype(object) + ".t.bulk-exfil.net"
    hexa = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    drip = hexa[rng.integers(0, 16, (n_drip, 40))].view("S40").ravel().astype(str).astype(object) + ".drip.example.net"
    cdn = hexa[rng.integers(0, 16, (n_cdn, 16))].view("S16").ravel().astype(str).astype(object) + ".cdn.jsdelivr.net"
    words = np.asarray(["pypi", "github", "npm", "docker", "maven", "golang", "crates", "ubuntu"], dtype=object)
    search = (words[rng.integers(0, len(words), n_search)]
              + rng.integers(0, 5000, n_search).astype(str).astype(object) + ".svc.cluster.local")
    query = np.concatenate([ci_names, tun_names, drip, cdn, search])
    kind = np.concatenate([np.zeros(n_ci), np.ones(n_tunnel), np.full(n_drip, 2), np.full(n_cdn, 3), np.full(n_search, 4)]).astype(np.int8)
    ts = np.concatenate([
        t0 + np.sort(rng.uniform(0, span, n_ci)),
        t0 + 3600 + np.sort(rng.uniform(0, 600, n_tunnel)),
        t0 + np.arange(n_drip) * 120.0 + rng.uniform(-2, 2, n_drip),
        t0 + np.sort(rng.uniform(0, span, n_cdn)),
        t0 + np.sort(rng.uniform(0, span, n_search)),
    ])
    order = np.argsort(ts, kind="stable")
    query, kind, ts = query[order], kind[order], ts[order]
    n = len(query)
    qtype = np.where(kind == 1, 16, 1)
    qtype_name = np.where(kind == 1, "TXT", "A")
    rcode = np.where(kind == 4, 3, 0)
    ci_addr = _addr(np.arange(len(CI_NAMES)) * 7 + 11)
    name_to_addr = dict(zip(CI_NAMES, ci_addr))
    ans = np.full(n, "-", dtype=object)
    m = kind == 0
    ans[m] = pd.Series(query[m]).map(name_to_addr).to_numpy(dtype=object)
    ans[kind == 3] = "104.16.85.20,104.16.86.20"
    ans[kind == 1] = "TXT 20 aGVsbG8gd29ybGQgaGVsbG8="
    ans[kind == 2] = "192.0.2.1"
    uid = "C" + pd.Series(np.arange(n)).astype(str).str.zfill(17)
    dns = pd.DataFrame({
        "ts": pd.Series(ts).map("{:.6f}".format), "uid": uid, "id.orig_h": "10.1.0.4",
        "id.orig_p": rng.integers(32768, 61000, n), "id.resp_h": "127.0.0.53", "id.resp_p": 53, "proto": "udp",
        "trans_id": rng.integers(0, 65536, n), "rtt": "0.001500", "query": query, "qclass": 1, "qclass_name": "C_INTERNET",
        "qtype": qtype, "qtype_name": qtype_name, "rcode": rcode, "rcode_name": np.where(rcode == 3, "NXDOMAIN", "NOERROR"),
        "AA": "F", "TC": "F", "RD": "T", "RA": "T", "Z": 0, "answers": ans,
        "TTLs": np.where(ans == "-", "-", "60.000000"), "rejected": "F", "opcode": 0, "opcode_name": "query",
    })
    schema = load_schema("dns")
    dns = dns[list(schema.names)]
    with open(os.path.join(directory, "dns.log"), "wb") as f:
        f.write(tsv_header(schema, t0))
        dns.to_csv(f, sep="\t", header=False, index=False, lineterminator="\n")

    # ---- conn.log: HTTPS to CI and CDN addresses, a few direct-to-IP ones
    n = rows
    dest_kind = rng.random(n)
    addr = np.where(dest_kind < 0.9, ci_addr[rng.integers(0, len(ci_addr), n)], "104.16.85.20").astype(object)
    direct = rng.random(n) < 0.001
    addr[direct] = _addr(rng.integers(100000, 100020, direct.sum()))
    cts = t0 + np.sort(rng.uniform(0, span, n))
    conn = pd.DataFrame({
        "ts": pd.Series(cts).map("{:.6f}".format), "uid": "D" + pd.Series(np.arange(n)).astype(str).str.zfill(17),
        "id.orig_h": "10.1.0.4", "id.orig_p": rng.integers(32768, 61000, n), "id.resp_h": addr, "id.resp_p": 443,
        "proto": "tcp", "service": "ssl", "duration": "1.250000", "orig_bytes": rng.integers(500, 50000, n),
        "resp_bytes": rng.integers(1000, 5_000_000, n), "conn_state": "SF", "local_orig": "T", "local_resp": "F",
        "missed_bytes": 0, "history": "ShADadFf", "orig_pkts": 12, "orig_ip_bytes": 6000, "resp_pkts": 40,
        "resp_ip_bytes": 90000, "tunnel_parents": "-", "ip_proto": 6,
    })
    schema = load_schema("conn")
    conn = conn[list(schema.names)]
    with open(os.path.join(directory, "conn.log"), "wb") as f:
        f.write(tsv_header(schema, t0))
        conn.to_csv(f, sep="\t", header=False, index=False, lineterminator="\n")


def measure(directory: str, policy: str | None) -> dict:
    """Load and analyze in this process as ``cicd-audit analyze`` does (dns.log read into the
    analyzers' index, no per-name table); report phase times and peak RSS."""
    t = time.perf_counter()
    from cicd_audit.analyzers import analyze
    from cicd_audit.analyzers.loading import load_for_analysis
    from cicd_audit.policy import load_policy

    t_import = time.perf_counter() - t
    t = time.perf_counter()
    logs = load_for_analysis(directory)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    result = analyze(logs, policy=load_policy(policy) if policy else None, name_features=False)
    t_analyze = time.perf_counter() - t
    tun = result.findings[result.findings["analyzer"] == "dns_tunnel"]
    return {
        "dns_rows": logs.dns_index.total_rows,
        "conn_rows": len(logs.conn),
        "import_s": round(t_import, 2),
        "load_s": round(t_load, 2),
        "analyze_s": round(t_analyze, 2),
        "total_s": round(t_import + t_load + t_analyze, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "findings": len(result.findings),
        "tunnel_domains": sorted(tun["indicator"]),
    }


TUNNEL_CAPTURES = {
    "iodine": "biillpi.com", "dnscat2": "biillpi.com", "dns2tcp": "hsc.fr", "dnsexfiltrator": "hsc.fr",
    "sods": "hsc.fr", "iodine_elastic": "pirate.sea", "dns2tcp_netrack": "hidemyself.org",
}


def detection(shared: str, workdir: str) -> dict:
    """Precision and recall per registered domain.

    Positives: the tunnel domain of each capture in dns-tunnel-data/pcaps/,
    recorded with `cicd-audit record --pcap -C`. Negatives: every other
    registered domain in those sessions, and every registered domain of the
    real Zeek logs in dns-tunnel-data/benign/.
    """
    import shutil
    import tempfile

    from cicd_audit.analyzers import analyze, load_logs

    data = os.path.join(shared, "dns-tunnel-data")
    exe = os.path.join(os.path.dirname(sys.executable), "cicd-audit")
    rows = []
    tmp = tempfile.mkdtemp(prefix="detect-", dir=workdir)
    for cap, domain in TUNNEL_CAPTURES.items():
        pdir = os.path.join(data, "pcaps", cap)
        pcap = sorted(f for f in os.listdir(pdir) if f.endswith(".pcap"))[0]
        out = os.path.join(tmp, cap)
        subprocess.run([exe, "record", "--pcap", os.path.join(pdir, pcap), "-C", "--no-progress", "--out", out],
                       check=True, capture_output=True)
        r = analyze(load_logs(out))
        flagged = set(r.findings.loc[r.findings["analyzer"] == "dns_tunnel", "indicator"])
        for d in set(r.lookups["registered_domain"]):
            rows.append((cap, d, d == domain, d in flagged))
    for f in sorted(os.listdir(os.path.join(data, "benign"))):
        if ".log" not in f:
            continue
        d = os.path.join(tmp, "benign-" + f.split(".")[0])
        os.makedirs(d)
        shutil.copy(os.path.join(data, "benign", f), os.path.join(d, "dns.log.gz" if f.endswith(".gz") else "dns.log"))
        r = analyze(load_logs(d))
        flagged = set(r.findings.loc[r.findings["analyzer"] == "dns_tunnel", "indicator"])
        for dom in set(r.lookups["registered_domain"]):
            rows.append((f, dom, False, dom in flagged))
    shutil.rmtree(tmp, ignore_errors=True)
    tp = sum(1 for r in rows if r[2] and r[3])
    fp = sum(1 for r in rows if not r[2] and r[3])
    fn = sum(1 for r in rows if r[2] and not r[3])
    tn = sum(1 for r in rows if not r[2] and not r[3])
    return {
        "positives": tp + fn, "negatives": fp + tn, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "missed": sorted(f"{r[0]}:{r[1]}" for r in rows if r[2] and not r[3]),
        "false_alarms": sorted(f"{r[0]}:{r[1]}" for r in rows if not r[2] and r[3]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/cicd-audit-bench")
    ap.add_argument("--regen", action="store_true")
    ap.add_argument("--policy", help="also evaluate this policy file")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--detection", action="store_true", help="precision/recall on ../shared/dns-tunnel-data (root)")
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
    a = ap.parse_args(argv)
    if a.detection:
        os.makedirs(a.dir, exist_ok=True)
        print(json.dumps(detection(os.path.normpath(a.shared), a.dir), indent=2))
        return 0
    session = os.path.join(a.dir, f"session-{a.rows}")
    if a.measure:
        print(json.dumps(measure(session, a.policy)))
        return 0
    if a.regen or not os.path.exists(os.path.join(session, "conn.log")):
        t = time.perf_counter()
        generate(session, a.rows)
        print(f"generated {a.rows:,} + {a.rows:,} rows in {time.perf_counter() - t:.1f} s -> {session}", file=sys.stderr)
    cmd = [sys.executable, os.path.abspath(__file__), "--measure", "--rows", str(a.rows), "--dir", a.dir]
    if a.policy:
        cmd += ["--policy", a.policy]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t
    r = json.loads(out)
    r["wall_s"] = round(wall, 2)
    r["cpus"] = os.cpu_count()
    r["goal_met"] = wall <= GOAL_SECONDS and r["peak_rss_mb"] * 1024 * 1024 <= GOAL_BYTES
    print(json.dumps(r, indent=2))
    return 0 if r["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
