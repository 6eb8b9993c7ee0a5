"""Fixtures for the fleet tests: small CI sessions of a few workflows, written with the project's own
Zeek writer at test time (TSV, JSON and gzip mixed, as a fleet's runners would leave them), a moto
S3 server on 127.0.0.1, and one Dask LocalCluster shared by the module that needs it.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

DAY = 86_400.0
T0 = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC

REGISTRY = {"pypi.org": "151.101.64.223", "files.pythonhosted.org": "151.101.0.223", "github.com": "140.82.112.3",
            "objects.githubusercontent.com": "185.199.108.133"}


def write_session(directory: Path, start: float, seed: int, job: dict | None = None, fmt: str = "tsv",
                  extra_names=(), exfil: bool = False, gz: bool = False) -> Path:
    """One CI job: registry lookups and downloads, plus ``extra_names`` looked up and connected to;
    ``exfil`` adds a base32 DNS drip and a direct-to-IP upload."""
    from cicd_audit.zeeklog.schema import load_schema
    from cicd_audit.zeeklog.writer import LogWriter

    rng = random.Random(seed)
    dns, conn = [], []
    t = start
    n = 0

    def lookup(name, answers, qtype=1, qname="A", rcode=0):
        nonlocal t, n
        t += rng.uniform(0.05, 0.4)
        n += 1
        uid = "C%017d" % n
        sport = rng.randint(32768, 60999)
        conn.append({"ts": t, "uid": uid, "id.orig_h": "10.1.0.4", "id.orig_p": sport, "id.resp_h": "10.1.0.1",
                     "id.resp_p": 53, "proto": "udp", "service": "dns", "duration": 0.002, "orig_bytes": 40,
                     "resp_bytes": 80, "conn_state": "SF", "local_orig": True, "local_resp": True, "missed_bytes": 0,
                     "history": "Dd", "orig_pkts": 1, "orig_ip_bytes": 68, "resp_pkts": 1, "resp_ip_bytes": 108,
                     "tunnel_parents": [], "ip_proto": 17})
        dns.append({"ts": t, "uid": uid, "id.orig_h": "10.1.0.4", "id.orig_p": sport, "id.resp_h": "10.1.0.1",
                    "id.resp_p": 53, "proto": "udp", "trans_id": rng.randint(0, 65535), "rtt": 0.002, "query": name,
                    "qclass": 1, "qclass_name": "C_INTERNET", "qtype": qtype, "qtype_name": qname, "rcode": rcode,
                    "rcode_name": "NOERROR" if rcode == 0 else "NXDOMAIN", "AA": False, "TC": False, "RD": True,
                    "RA": True, "Z": 0, "answers": list(answers) or None, "TTLs": [60.0] * len(answers) or None,
                    "rejected": False})

    def connect(addr, port, orig_bytes, resp_bytes):
        nonlocal t, n
        t += rng.uniform(0.05, 0.4)
        n += 1
        conn.append({"ts": t, "uid": "C%017d" % n, "id.orig_h": "10.1.0.4", "id.orig_p": rng.randint(32768, 60999),
                     "id.resp_h": addr, "id.resp_p": port, "proto": "tcp", "service": "ssl", "duration": 1.25,
                     "orig_bytes": orig_bytes, "resp_bytes": resp_bytes, "conn_state": "SF", "local_orig": True,
                     "local_resp": False, "missed_bytes": 0, "history": "ShADadFf", "orig_pkts": 10,
                     "orig_ip_bytes": orig_bytes + 520, "resp_pkts": 12, "resp_ip_bytes": resp_bytes + 624,
                     "tunnel_parents": None, "ip_proto": 6})

    for name, addr in [*REGISTRY.items(), *extra_names]:
        lookup(name, [addr])
        connect(addr, 443, 1500 + rng.randint(0, 500), 50_000 + rng.randint(0, 5000))
    if exfil:
        for i in range(30):
            label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(32))
            t += 19.0
            lookup(f"{label}.{i}.d.example.net", ["192.0.2.1"])
        connect("1.1.1.1", 443, 2_500_000, 3000)
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in (("dns", dns), ("conn", conn)):
        with LogWriter(directory, load_schema(name), fmt=fmt, flush_interval=0, open_time=start) as w:
            for r in rows:
                w.write(r)
    if gz:
        for p in list(directory.iterdir()):
            if p.name.startswith(("conn.", "dns.")):
                with open(p, "rb") as src, gzip.open(str(p) + ".gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                p.unlink()
    if job is not None:
        (directory / "job.json").write_text(json.dumps(job))
    return directory


def job(session, repository, workflow, **kw):
    return {"format": "cicd-audit-job", "version": 1, "session": session, "repository": repository,
            "workflow": workflow, **kw}


@pytest.fixture(scope="session")
def fleet_sessions(tmp_path_factory) -> list:
    """Eight jobs: four runs of acme/api build (the last one exfiltrates, one is gzipped JSON), three of
    acme/web deploy (the third looks up a new CDN), and one directory without job.json."""
    root = tmp_path_factory.mktemp("fleet")
    out = []
    for i in range(4):
        out.append(write_session(root / f"runner-{i}" / "net", T0 + i * DAY, seed=i,
                                 job=job(f"api-build-{i}", "acme/api", "build.yml", run_id=str(100 + i)),
                                 fmt="json" if i == 1 else "tsv", gz=i == 1, exfil=i == 3))
    for i in range(3):
        extra = [("cdn.newvendor.io", "203.0.113.50")] if i == 2 else []
        out.append(write_session(root / f"web-{i}", T0 + i * DAY + 3600, seed=10 + i,
                                 job=job(f"web-deploy-{i}", "acme/web", "deploy.yml"), extra_names=extra))
    out.append(write_session(root / "loose-session", T0 + 3 * DAY + 7200, seed=42))
    return out


# ---------------------------------------------------------------------------
# object storage: moto's S3 server, on the loopback interface only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1; yields (endpoint URL, storage_options for s3fs)."""
    port = _free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start (exit {proc.poll()})")
                time.sleep(0.1)
        opts = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        yield endpoint, opts
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def local_cluster():
    """A two-worker Dask LocalCluster on 127.0.0.1, closed when the module's tests are done."""
    import logging

    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR)
    try:
        yield cluster
    finally:
        cluster.close()
