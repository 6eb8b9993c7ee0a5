"""Fleet benchmark: ingest rate, analyze --store (single process vs Dask LocalCluster) and an
indicator search over a generated store. Numbers go to docs/fleet.md.

    python bench/fleet_bench.py --out /var/tmp/fleet-bench/10m --dns-rows 1000 --ingest-sample 50 --analyze-repos 1  # 10M DNS rows
    python bench/fleet_bench.py --out /var/tmp/fleet-bench/50m --dns-rows 5000 --ingest-sample 12 --analyze-repos 1  # 50M

Run ``--phases generate`` first (in the background, under ``nice``: the 50M store took 11 minutes of
the 2-core VM's two processes on 2026-12-06), then ``--phases search,ingest,analyze``, and
``--phases analyze-all`` with ``--scheduler sync`` and ``local`` for the whole store. Check ``df -h``
first: the 10M store is about 0.5 GB, the 50M one 1.6 GB.

Phases (each prints one JSON line; --phases picks some):
  generate   sessions built in memory (vectorised numpy; a busy runner's mix: registry and GitHub
             names, random-label CDN keys, NXDOMAIN noise, one TXT tunnel every 500 jobs) and
             written with fleet.ingest.write_session: frames -> Parquet rows/s
  ingest     a sample of sessions written as Zeek TSV with the project's LogWriter, then
             `store add`'s add_session (TSV parse + Parquet): rows/s end to end
  search     find_indicator over the whole store, and over one day, sync and on the cluster
  analyze-all  analyze_store over the whole store in one call: on a LocalCluster (--workers), or with
             --scheduler sync in one fresh process; peak RSS and RSS over time either way
  analyze    analyze_store on --analyze-repos repositories (every run of their workflows, each against
             its last 10 runs): single process (a fresh child, peak RSS) vs LocalCluster (2 workers x
             1 thread, peak RSS per worker). Only those sessions are analyzed: the output says how
             many, and nothing is extrapolated to the store

Generated data lives under --out only and is never committed. Machine load from other work shows in
the numbers: run it with `nice` on an otherwise idle machine for clean figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

T0 = pd.Timestamp("2025-07-01", tz="UTC").value // 10**9
COMMON = ["pypi.org", "files.pythonhosted.org", "github.com", "api.github.com", "objects.githubusercontent.com",
          "codeload.github.com", "registry.npmjs.org", "registry.yarnpkg.com", "ghcr.io", "pkg-containers.githubusercontent.com",
          "production.cloudflare.docker.com", "registry-1.docker.io", "auth.docker.io", "proxy.golang.org",
          "sum.golang.org", "repo.maven.apache.org", "crates.io", "static.crates.io", "index.crates.io",
          "dl.google.com", "storage.googleapis.com", "s3.amazonaws.com", "deb.debian.org", "security.debian.org",
          "archive.ubuntu.com", "api.nuget.org", "rubygems.org", "index.rubygems.org", "cdn.jsdelivr.net",
          "nodejs.org"]
B32 = np.array(list("abcdefghijklmnopqrstuvwxyz234567"))
HEX = np.array(list("0123456789abcdef"))


def _addr(name_index: np.ndarray, k: int = 0) -> np.ndarray:
    a = (name_index * 7 + k) % 250 + 1
    b = (name_index * 13 + k * 3) % 250 + 1
    return np.char.add(np.char.add("151.101.", a.astype(str)), np.char.add(".", b.astype(str)))


def _labels(rng, n, length, alphabet) -> np.ndarray:
    idx = rng.integers(0, len(alphabet), size=(n, length))
    return np.array(["".join(r) for r in alphabet[idx]], dtype=object)


def session_frames(i: int, dns_rows: int, conn_rows: int):
    """One job's conn and dns frames, with load_logs' dtypes (deterministic per i)."""
    from cicd_audit.zeeklog.reader import dtype_for
    from cicd_audit.zeeklog.schema import load_schema

    rng = np.random.default_rng(i)
    start = T0 + (i // 112) * 86_400 + (i % 112) * 700 + rng.uniform(0, 60)  # ~112 jobs a day over 90 days
    ts = start + np.sort(rng.uniform(0, 600, dns_rows))
    kind = rng.random(dns_rows)
    names = np.empty(dns_rows, dtype=object)
    common = kind < 0.7
    ci = rng.integers(0, len(COMMON), dns_rows)
    names[common] = np.array(COMMON, dtype=object)[ci[common]]
    cdn = (kind >= 0.7) & (kind < 0.9)
    names[cdn] = _labels(rng, int(cdn.sum()), 16, HEX) + ".cdn.jsdelivr.net"
    nx = kind >= 0.9
    names[nx] = np.array(COMMON, dtype=object)[ci[nx]] + ".corp.example.internal"  # search-domain noise
    rcode = np.where(nx, 3, 0)
    tunnel = i % 500 == 7
    if tunnel:  # a TXT tunnel: 300 queries of base32 payload
        k = min(300, dns_rows)
        names[-k:] = _labels(rng, k, 40, B32) + f".t{i}.exfil-bench.net"
        rcode[-k:] = 0
    qtype = np.where(rng.random(dns_rows) < 0.8, 1, 28)
    if tunnel:
        qtype[-min(300, dns_rows):] = 16
    name_idx = np.where(common | nx, ci, 40 + (ts * 1000).astype(np.int64) % 50)
    a1, a2 = _addr(name_idx, 0), _addr(name_idx, 1)
    answers = [None if r else [x, y] for r, x, y in zip(rcode, a1, a2)]
    ttls = [None if a is None else [60.0, 60.0] for a in answers]
    uid = np.char.add("C", np.char.zfill((np.arange(dns_rows) + i * 10**6).astype(str), 17))
    sport = rng.integers(32768, 61000, dns_rows)
    dns = {"ts": pd.to_datetime(ts, unit="s", utc=True).round("us"), "uid": uid, "id.orig_h": "10.1.0.4",
           "id.orig_p": sport, "id.resp_h": "10.1.0.1", "id.resp_p": 53, "proto": "udp",
           "trans_id": rng.integers(0, 65536, dns_rows), "rtt": pd.to_timedelta(np.full(dns_rows, 2000), unit="us"),
           "query": names, "qclass": 1, "qclass_name": "C_INTERNET", "qtype": qtype,
           "qtype_name": np.where(qtype == 1, "A", np.where(qtype == 28, "AAAA", "TXT")), "rcode": rcode,
           "rcode_name": np.where(rcode == 3, "NXDOMAIN", "NOERROR"), "AA": False, "TC": False, "RD": True, "RA": True,
           "Z": 0, "answers": answers, "TTLs": ttls, "rejected": False}
    pick = rng.integers(0, dns_rows, conn_rows)
    ok = rcode[pick] == 0
    cts = ts[pick] + 0.01
    conn = {"ts": pd.to_datetime(cts, unit="s", utc=True).round("us"),
            "uid": np.char.add("D", np.char.zfill((np.arange(conn_rows) + i * 10**6).astype(str), 17)),
            "id.orig_h": "10.1.0.4", "id.orig_p": rng.integers(32768, 61000, conn_rows),
            "id.resp_h": np.where(ok, a1[pick], "10.1.0.1"), "id.resp_p": np.where(ok, 443, 53),
            "proto": np.where(ok, "tcp", "udp"), "service": np.where(ok, "ssl", "dns"),
            "duration": pd.to_timedelta(rng.integers(1000, 5_000_000, conn_rows), unit="us"),
            "orig_bytes": rng.integers(100, 20_000, conn_rows), "resp_bytes": rng.integers(1000, 2_000_000, conn_rows),
            "conn_state": "SF", "local_orig": True, "local_resp": ~ok, "missed_bytes": 0, "history": "ShADadFf",
            "orig_pkts": 10, "orig_ip_bytes": 2000, "resp_pkts": 12, "resp_ip_bytes": 30_000, "tunnel_parents": None,
            "ip_proto": np.where(ok, 6, 17)}
    out = {}
    for log, cols, n in (("dns", dns, dns_rows), ("conn", conn, conn_rows)):
        frame = {}
        for f in load_schema(log).fields:
            v = cols.get(f.name)
            dt = dtype_for(f.type)
            if isinstance(dt, np.dtype) and dt.kind == "O":
                frame[f.name] = pd.Series(v if isinstance(v, list) else [None] * n, dtype=object)
            elif isinstance(v, list):       # a set or vector column: Arrow lists, as load_logs gives them
                frame[f.name] = pd.Series(pd.array(v, dtype=dt))
            elif v is None:
                frame[f.name] = pd.Series(pd.array([None] * n, dtype=dt))
            else:
                arr = np.broadcast_to(np.asarray(v), (n,)) if np.ndim(v) == 0 else v
                frame[f.name] = pd.Series(arr).astype(dt)
        out[log] = pd.DataFrame(frame)
    return out["conn"], out["dns"], start


def job_identity(i: int, repos: int):
    r = i % repos
    return f"bench/repo{r:03d}", ("build.yml" if (i // repos) % 2 == 0 else "test.yml")


def _generate_chunk(args):
    from cicd_audit.fleet.ingest import write_session
    from cicd_audit.fleet.jobmeta import JobMeta
    from cicd_audit.fleet.store import Store

    store_url, lo, hi, dns_rows, conn_rows, repos = args
    store = Store.open(store_url, create=True)
    rows = 0
    for i in range(lo, hi):
        conn, dns, _ = session_frames(i, dns_rows, conn_rows)
        repo, wf = job_identity(i, repos)
        write_session(store, JobMeta(session=f"job-{i:06d}", repository=repo, workflow=wf), {"conn": conn, "dns": dns})
        rows += len(conn) + len(dns)
    return rows


def phase_generate(a):
    store = str(Path(a.out) / "store")
    Path(store).mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    step = 250
    chunks = [(store, lo, min(lo + step, a.sessions), a.dns_rows, a.conn_rows, a.repos) for lo in range(0, a.sessions, step)]
    rows = 0
    with ProcessPoolExecutor(a.workers) as pool:
        for k, n in enumerate(pool.map(_generate_chunk, chunks), 1):
            rows += n
            if k % 4 == 0 or k == len(chunks):  # progress on stderr: 10,000 sessions take many minutes
                print(f"generate: {min(k * step, a.sessions):,}/{a.sessions:,} sessions, {rows:,} rows, {time.perf_counter() - t:.0f} s",
                      file=sys.stderr, flush=True)
    dt = time.perf_counter() - t
    cpu = _children_cpu_s()  # the pool's processes, joined when it closed
    size = sum(f.stat().st_size for f in Path(store).rglob("*.parquet"))
    return {"phase": "generate", "sessions": a.sessions, "dns_rows": a.sessions * a.dns_rows, "rows": rows,
            "seconds": round(dt, 1), "rows_per_s_all_workers": round(rows / dt), "processes": a.workers,
            "cpu_s": round(cpu, 1), "rows_per_cpu_s": round(rows / cpu),
            "store_bytes": size, "note": "generation and frames->Parquet together"}


def phase_ingest(a):
    from cicd_audit.fleet.ingest import add_session
    from cicd_audit.fleet.store import Store
    from cicd_audit.zeeklog.schema import load_schema
    from cicd_audit.zeeklog.writer import LogWriter

    base = Path(a.out) / "ingest-sample"
    dirs = []
    for k in range(a.ingest_sample):
        i = 900_000 + k
        d = base / f"s{k:04d}"
        if not (d / "dns.log").exists():
            conn, dns, start = session_frames(i, a.dns_rows, a.conn_rows)
            d.mkdir(parents=True, exist_ok=True)
            for log, frame in (("conn", conn), ("dns", dns)):
                with LogWriter(d, load_schema(log), fmt="tsv", flush_interval=0, open_time=start) as w:
                    for rec in _records(frame):
                        w.write(rec)
        dirs.append(d)
    store = Store.open(Path(a.out) / "ingest-store", create=True)
    t, c = time.perf_counter(), time.process_time()
    rows = 0
    for d in dirs:
        m = add_session(store, d)
        rows += m["rows"]["conn"] + m["rows"]["dns"]
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    return {"phase": "ingest", "sessions": len(dirs), "rows": rows, "seconds": round(dt, 2),
            "rows_per_s_one_process": round(rows / dt), "rows_per_cpu_s": round(rows / cpu),
            "note": "Zeek TSV parse (load_logs) + Parquet write + manifest"}


def _cell(v):
    """A cell as the writer takes it: None for unset; a list column's Arrow cell as a list."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if v is None or (not isinstance(v, list) and pd.isna(v)):
        return None
    return v


def _records(frame: pd.DataFrame):
    cols = list(frame.columns)
    conv = {}
    for c in cols:
        s = frame[c]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            conv[c] = (s.astype("int64") / 1e9).tolist()
        elif str(s.dtype).startswith("timedelta"):
            conv[c] = [None if pd.isna(v) else v.total_seconds() for v in s]
        else:
            conv[c] = [_cell(v) for v in s.astype(object)]
    for k in range(len(frame)):
        yield {c: conv[c][k] for c in cols}


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM of its own address space.

    Not getrusage's ru_maxrss: Linux carries it across fork and execve, so a Dask worker or a child
    spawned by a process that had grown to 500 MB would report the parent's peak as its own.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _cpu_s() -> float:
    """CPU seconds of this process: with other work on the machine, wall time alone overstates the cost."""
    return time.process_time()


def phase_search(a):
    from cicd_audit.fleet.queries import find_indicator

    store = str(Path(a.out) / "store")
    inds = ["exfil-bench.net", "203.0.113.0/24", "151.101.17.0/24"]
    out = {"phase": "search", "indicators": inds, "store_sessions": _stored_sessions(a.out)}
    t, c = time.perf_counter(), _cpu_s()
    hits = find_indicator(store, inds, scheduler="sync")
    out["whole_store_sync_s"] = round(time.perf_counter() - t, 1)
    out["whole_store_sync_cpu_s"] = round(_cpu_s() - c, 1)
    out["hits"] = int(len(hits))
    out["jobs"] = int(hits["session"].nunique()) if len(hits) else 0
    day = pd.Timestamp(T0, unit="s", tz="UTC") + pd.Timedelta(days=30)
    t = time.perf_counter()
    find_indicator(store, inds, since=day, until=day + pd.Timedelta(days=1), scheduler="sync")
    out["one_day_sync_s"] = round(time.perf_counter() - t, 2)
    from distributed import Client

    from cicd_audit.fleet.cluster import local_cluster

    with local_cluster(a.workers) as cluster, Client(cluster) as client:
        c = sum(client.run(_cpu_s).values())
        t = time.perf_counter()
        find_indicator(store, inds, scheduler=cluster.scheduler_address)
        out["whole_store_cluster_s"] = round(time.perf_counter() - t, 1)
        out["whole_store_cluster_worker_cpu_s"] = round(sum(client.run(_cpu_s).values()) - c, 1)
        out["cluster_peak_rss_mb_per_worker"] = sorted(round(v) for v in client.run(_peak_rss_mb).values())
    out["client_peak_rss_mb"] = round(_peak_rss_mb())
    return out


def _analyze_child(a):
    """Runs in a fresh process: analyze_store on the sync scheduler, its own peak RSS."""
    from cicd_audit.fleet.analysis import analyze_store

    t, c = time.perf_counter(), _cpu_s()
    res = analyze_store(str(Path(a.out) / "store"), scheduler="sync", repository=a.only_repo)
    return {"seconds": time.perf_counter() - t, "cpu_s": _cpu_s() - c, "sessions": len(res.sessions),
            "findings": len(res.findings), "peak_rss_mb": _peak_rss_mb()}


def phase_analyze(a):
    from distributed import Client

    from cicd_audit.fleet.analysis import analyze_store
    from cicd_audit.fleet.cluster import local_cluster

    repos = [f"bench/repo{r:03d}" for r in range(a.analyze_repos)]
    out = {"phase": "analyze", "repositories": repos}
    single = {"seconds": 0.0, "cpu_s": 0.0, "sessions": 0, "findings": 0, "peak_rss_mb": 0.0}
    for repo in repos:
        r = subprocess.run([sys.executable, __file__, "--out", a.out, "--phases", "analyze-child", "--only-repo", repo],
                           capture_output=True, text=True, check=True)
        got = json.loads(r.stdout.strip().splitlines()[-1])
        for k in ("seconds", "cpu_s", "sessions", "findings"):
            single[k] += got[k]
        single["peak_rss_mb"] = max(single["peak_rss_mb"], got["peak_rss_mb"])
    out["single_process"] = {**single, "seconds": round(single["seconds"], 1), "cpu_s": round(single["cpu_s"], 1),
                             "peak_rss_mb": round(single["peak_rss_mb"]),
                             "s_per_session": round(single["seconds"] / max(1, single["sessions"]), 3)}
    with local_cluster(a.workers) as cluster, Client(cluster) as client:
        c = sum(client.run(_cpu_s).values())
        t = time.perf_counter()
        n = f = 0
        for repo in repos:
            res = analyze_store(str(Path(a.out) / "store"), scheduler=cluster.scheduler_address, repository=repo)
            n += len(res.sessions)
            f += len(res.findings)
        dt = time.perf_counter() - t
        cpu = sum(client.run(_cpu_s).values()) - c
        rss = client.run(_peak_rss_mb)
    out["local_cluster"] = {"workers": a.workers, "seconds": round(dt, 1), "worker_cpu_s": round(cpu, 1), "sessions": n,
                            "findings": f,
                            "s_per_session": round(dt / max(1, n), 3),
                            "peak_rss_mb_per_worker": sorted(round(v) for v in rss.values())}
    out["store_sessions"] = _stored_sessions(a.out)  # what share of the store the figures above cover
    return out


def phase_analyze_all(a):
    """analyze_store over the whole store in one call: every stored session against its last 10
    runs, as `cicd-audit analyze --store STORE --scheduler local` runs it (--scheduler sync: in
    one fresh process, as `--scheduler sync` runs it)."""
    if a.scheduler == "sync":
        r = subprocess.run([sys.executable, __file__, "--out", a.out, "--phases", "analyze-all-child",
                            "--rss-every", str(a.rss_every)], capture_output=True, text=True, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])
    from distributed import Client

    from cicd_audit.fleet.analysis import analyze_store
    from cicd_audit.fleet.cluster import local_cluster

    with local_cluster(a.workers) as cluster, Client(cluster) as client:
        c = sum(client.run(_cpu_s).values())
        t = time.perf_counter()
        with _sampled(lambda: sorted(round(v) for v in client.run(_rss_mb).values()), a.rss_every) as rss_over_time:
            res = analyze_store(str(Path(a.out) / "store"), scheduler=cluster.scheduler_address)
        dt = time.perf_counter() - t
        cpu = sum(client.run(_cpu_s).values()) - c
        rss = client.run(_peak_rss_mb)
    n = len(res.sessions)
    return {"phase": "analyze-all", "scheduler": "local", "workers": a.workers, "sessions": n, "store_sessions": _stored_sessions(a.out),
            "seconds": round(dt, 1), "worker_cpu_s": round(cpu, 1), "cpu_s_per_session": round(cpu / max(1, n), 3),
            "findings": len(res.findings), "findings_by_severity": _severities(res),
            "peak_rss_mb_per_worker": sorted(round(v) for v in rss.values()),
            "rss_mb_per_worker_over_time": rss_over_time}


def _analyze_all_child(a):
    """Runs in a fresh process: the whole store on the sync scheduler, its RSS over time and peak."""
    from cicd_audit.fleet.analysis import analyze_store

    t, c = time.perf_counter(), _cpu_s()
    with _sampled(lambda: round(_rss_mb()), a.rss_every) as samples:
        res = analyze_store(str(Path(a.out) / "store"), scheduler="sync")
    dt, cpu, n = time.perf_counter() - t, _cpu_s() - c, len(res.sessions)
    return {"phase": "analyze-all", "scheduler": "sync", "sessions": n, "store_sessions": _stored_sessions(a.out),
            "seconds": round(dt, 1), "cpu_s": round(cpu, 1), "cpu_s_per_session": round(cpu / max(1, n), 3),
            "findings": len(res.findings), "findings_by_severity": _severities(res), "peak_rss_mb": round(_peak_rss_mb()),
            "rss_mb_over_time": samples}


@contextlib.contextmanager
def _sampled(read, every_s: float):
    """[(seconds, read())] every ``every_s`` while the block runs: a peak alone does not say
    whether memory grows with the sessions analyzed."""
    samples, stop = [], threading.Event()
    t0 = time.perf_counter()

    def sample():
        while not stop.wait(every_s):
            samples.append((round(time.perf_counter() - t0), read()))

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        yield samples
    finally:
        stop.set()
        th.join()


def _severities(res) -> dict:
    return res.findings["severity"].astype(str).value_counts().to_dict() if len(res.findings) else {}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _stored_sessions(out_dir) -> int:
    return sum(1 for p in (Path(out_dir) / "store" / "sessions").glob("*.json"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--dns-rows", type=int, default=1_000, help="DNS rows per session")
    p.add_argument("--conn-rows", type=int, default=250, help="conn rows per session")
    p.add_argument("--repos", type=int, default=100, help="repositories (two workflows each)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ingest-sample", type=int, default=100)
    p.add_argument("--analyze-repos", type=int, default=2, help="repositories whose every run is analyzed")
    p.add_argument("--only-repo")
    p.add_argument("--rss-every", type=float, default=60, help="analyze-all: seconds between samples of worker RSS")
    p.add_argument("--scheduler", choices=("local", "sync"), default="local",
                   help="analyze-all: a LocalCluster of --workers, or one process")
    p.add_argument("--phases", default="generate,ingest,search,analyze")
    a = p.parse_args()
    phases = a.phases.split(",")
    if phases == ["analyze-child"]:
        print(json.dumps(_analyze_child(a)))
        return
    if phases == ["analyze-all-child"]:
        print(json.dumps(_analyze_all_child(a)))
        return
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "pandas": pd.__version__,
                                  "load_avg": os.getloadavg()}}), flush=True)
    for name in phases:
        print(f"{name}: started {time.strftime('%H:%M:%S')}", file=sys.stderr, flush=True)
        out = {"generate": phase_generate, "ingest": phase_ingest, "search": phase_search, "analyze": phase_analyze,
           "analyze-all": phase_analyze_all}[name](a)
        # other work on the machine slows every phase: the load average says how much there was
        print(json.dumps({**out, "load_avg_after": [round(x, 2) for x in os.getloadavg()]}, default=str), flush=True)


if __name__ == "__main__":
    main()
