"""Severities a pipeline can gate on: the same evidence gives the same severity, more never lowers it."""

from __future__ import annotations

import base64
import random

import numpy as np
import pandas as pd
import pytest

from cicd_audit.analyzers import analyze, dns_tunnel
from cicd_audit.analyzers.findings import SEVERITY_RANK

from .test_dns_tunnel import dns_frame


def demo_tunnel_names(count=30):
    """The demo's channel: the same 30 base32 queries every run (20 bytes per name)."""
    data = random.Random(11).randbytes(20 * count)
    return [base64.b32encode(data[i : i + 20]).decode().rstrip("=").lower() + f".{i // 20}.x.exfil.example"
            for i in range(0, len(data), 20)]


def jittered(names, seed, gap=2.0, jitter=0.9):
    """The same queries with the timing noise of a loaded runner: each gap gap +- jitter*gap."""
    rng = np.random.default_rng(seed)
    gaps = gap * (1 + rng.uniform(-jitter, jitter, len(names)))
    d = dns_frame(names, answers=["192.0.2.7"])
    d["ts"] = pd.to_datetime(1_700_000_000.0 + np.cumsum(gaps), unit="s", utc=True)
    return d


def conn_frame(n=3):
    """A conn.log that shows the job connecting elsewhere, never to the tunnel's answer."""
    return pd.DataFrame({
        "ts": pd.to_datetime(1_700_000_000.0 + np.arange(n), unit="s", utc=True),
        "uid": pd.array([f"X{i}" for i in range(n)], dtype="string"),
        "id.orig_h": pd.array(["10.0.0.5"] * n, dtype="string"),
        "id.orig_p": pd.array([41000 + i for i in range(n)], dtype="UInt16"),
        "id.resp_h": pd.array(["140.82.112.3"] * n, dtype="string"),
        "id.resp_p": pd.array([443] * n, dtype="UInt16"),
        "proto": pd.array(["tcp"] * n, dtype="string"),
        "orig_bytes": pd.array([1000] * n, dtype="UInt64"),
        "resp_bytes": pd.array([9000] * n, dtype="UInt64"),
    })


@pytest.mark.parametrize("with_conn", [False, True])
def test_fifty_jittered_replays_one_severity(with_conn):
    names = demo_tunnel_names()
    sevs, cvs = [], []
    for seed in range(50):
        d = jittered(names, seed, jitter=0.1 + 0.8 * seed / 50)  # replays from calm to very noisy
        r = analyze({"dns": d, "conn": conn_frame() if with_conn else None})
        f = r.findings[r.findings["analyzer"] == "dns_tunnel"]
        assert len(f) == 1
        sevs.append(str(f.iloc[0]["severity"]))
        cvs.append(f.iloc[0]["evidence"]["timing_cv"])
    # the jitter really crosses the timing threshold, or the test proves nothing
    assert min(cvs) <= dns_tunnel.MAX_TIMING_CV < max(cvs)
    assert len(set(sevs)) == 1, sevs
    assert sevs[0] == "high"  # 30 encoded labels of a data-only domain (and never connected, with conn.log)


def test_timing_alone_never_moves_the_severity():
    names = demo_tunnel_names()
    regular = dns_frame(names, gap=5.0, answers=["192.0.2.7"])
    chaotic = jittered(names, seed=3, gap=5.0, jitter=0.99)
    a = dns_tunnel.detect_dns_tunnels(regular).iloc[0]
    b = dns_tunnel.detect_dns_tunnels(chaotic).iloc[0]
    assert "regular_timing" in a["evidence"]["signals"] and "regular_timing" not in b["evidence"]["signals"]
    assert a["severity"] == b["severity"] and a["evidence"]["score"] == b["evidence"]["score"]


@pytest.mark.parametrize("qtype,qtype_name,rcode", [(1, "A", 0), (16, "TXT", 3)])
def test_more_evidence_never_lowers_the_severity(qtype, qtype_name, rcode):
    """Prefixes of one growing channel (3 .. 2,000 queries): severity rank never decreases."""
    data = random.Random(2).randbytes(20 * 2000)
    names = [base64.b32encode(data[i : i + 20]).decode().rstrip("=").lower() + ".t.grow.example" for i in range(0, len(data), 20)]
    last = -1
    seen = []
    for k in (3, 5, 10, 20, 30, 60, 120, 250, 500, 1000, 2000):
        d = dns_frame(names[:k], qtype=qtype, qtype_name=qtype_name, rcode=rcode, gap=1.0 + (k % 7) / 3)
        f = dns_tunnel.detect_dns_tunnels(d)
        rank = SEVERITY_RANK[str(f.iloc[0]["severity"])] if len(f) else -1
        assert rank >= last, (k, seen)
        last = rank
        seen.append((k, rank))
    assert last == SEVERITY_RANK["critical"]
