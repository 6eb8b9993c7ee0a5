"""Small synthetic CI sessions for the fleet tests, the notebook test and nothing else: written with the
project's own Zeek writer at test time (never committed as logs)."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

DAY = 86_400.0
T0 = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC

REGISTRY = {"pypi.org": "151.101.64.223", "files.pythonhosted.org": "151.101.0.223", "github.com": "140.82.112.3",
            "objects.githubusercontent.com": "185.199.108.133"}


def write_session(directory: Path, start: float, seed: int, job: dict | None = None, fmt: str = "tsv",
                  extra_names=(), exfil: bool = False, gz: bool = False, shuffle: bool = False) -> Path:
    """One CI job: registry lookups and downloads, plus ``extra_names`` looked up and connected to;
    ``exfil`` adds a base32 DNS drip and a direct-to-IP upload; ``shuffle`` writes rows out of time
    order (as a recorder writes conn.log rows when connections end)."""
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
    if shuffle:
        rng.shuffle(conn)
        rng.shuffle(dns)
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


