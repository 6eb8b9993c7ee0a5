"""The DNS-tunnel / exfiltration detector.

Pure tier: real Zeek dns.logs of benign traffic, labeled tunnel names, and
generated CI sessions. Root tier: every capture in
../shared/dns-tunnel-data/pcaps/, recorded with `cicd-audit record --pcap`.
"""

import numpy as np
import pandas as pd
import pytest

from cicd_audit.analyzers import dns_tunnel, load_logs
from cicd_audit.analyzers.findings import FINDING_COLUMNS, SEVERITIES

EVIDENCE_KEYS = {
    "queries", "unique_subdomains", "encoded_subdomains", "encoding", "encoded_bytes", "encoded_bytes_per_s",
    "duration_s", "qtypes", "unusual_qtype_share", "nxdomain_share", "answer_addresses", "connected_addresses",
    "timing_cv", "examples", "score", "signals",
}


def dns_frame(names, qtype=1, qtype_name="A", rcode=0, answers=None, start=1_700_000_000.0, gap=0.5):
    """A dns.log DataFrame with the documented dtypes, one query per name."""
    n = len(names)
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(start + np.arange(n) * gap, unit="s", utc=True),
            "uid": pd.array([f"C{i}" for i in range(n)], dtype="string"),
            "id.orig_h": pd.array(["10.0.0.5"] * n, dtype="string"),
            "id.orig_p": pd.array([40000] * n, dtype="UInt16"),
            "id.resp_h": pd.array(["10.0.0.1"] * n, dtype="string"),
            "id.resp_p": pd.array([53] * n, dtype="UInt16"),
            "query": pd.array(list(names), dtype="string"),
            "qtype": pd.array([qtype] * n, dtype="UInt64"),
            "qtype_name": pd.array([qtype_name] * n, dtype="string"),
            "rcode": pd.array([rcode] * n, dtype="UInt64"),
            "answers": [answers] * n,
        }
    )


def flagged(findings):
    return set(findings.loc[findings["analyzer"] == "dns_tunnel", "indicator"])


# ---- benign ------------------------------------------------------------------


def test_real_zeek_benign_logs_are_not_flagged(benign_sessions):
    assert len(benign_sessions) >= 3
    for name, d in benign_sessions.items():
        logs = load_logs(d)
        assert len(logs.dns) > 0, name
        assert flagged(dns_tunnel.detect_dns_tunnels(logs.dns)) == set(), name


def test_ordinary_ci_job_is_not_flagged(ci_session):
    logs = load_logs(ci_session)
    assert flagged(dns_tunnel.detect_dns_tunnels(logs.dns, logs.conn)) == set()
    assert flagged(dns_tunnel.detect_dns_tunnels(logs.dns)) == set()  # also without conn.log


def test_plain_labeled_names_are_not_flagged(labeled):
    d = labeled("netrack_plain_names.csv")
    assert flagged(dns_tunnel.detect_dns_tunnels(dns_frame(d["qname"]))) == set()


def test_search_domain_flood_is_not_a_tunnel():
    """ndots/search-domain expansion: many NXDOMAIN names ending in one random tenant label."""
    tenant = "zbx5e4ebx5yefokmkzfzkylp5c"
    words = ["pypi", "registry", "github", "files", "objects", "api", "uploads", "codeload", "proxy", "sum"]
    names = [f"{w}{i}.org.{tenant}.bx.internal.cloudapp.net" for i in range(12) for w in words]
    assert flagged(dns_tunnel.detect_dns_tunnels(dns_frame(names, rcode=3))) == set()


def test_cdn_cache_keys_and_telemetry_ids_are_not_flagged():
    names = [f"{i:016x}{i * 7919:08x}"[:16] + ".cdn.jsdelivr.net" for i in range(40)]
    names += [f"o{450832 + i}.ingest.sentry.io" for i in range(10)]
    names += [f"{i}.{i}.168.192.in-addr.arpa" for i in range(40)]
    assert flagged(dns_tunnel.detect_dns_tunnels(dns_frame(names, answers=["151.101.1.229"]))) == set()


# ---- tunnels -----------------------------------------------------------------


@pytest.mark.parametrize(
    "csv,qtype,qtype_name,domain",
    [
        ("netrack_iodine_names.csv", 10, "NULL", "hidemyself.org"),
        ("netrack_dns2tcp_names.csv", 16, "TXT", "hidemyself.org"),
        ("netrack_dnscapy_names.csv", 1, "A", "example.org"),
    ],
)
def test_labeled_tunnel_names_are_flagged(labeled, csv, qtype, qtype_name, domain):
    d = labeled(csv)
    names = d.loc[d["label"] == 1, "qname"]
    f = dns_tunnel.detect_dns_tunnels(dns_frame(names, qtype=qtype, qtype_name=qtype_name))
    assert domain in flagged(f)
    row = f[f["indicator"] == domain].iloc[0]
    assert row["severity"] == "critical"  # thousands of names: bulk transfer


def test_short_handshake_is_flagged():
    """Twelve dnscat2-style queries: hex labels, MX/TXT, one per second."""
    rng = np.random.default_rng(1)
    names = ["".join(rng.choice(list("0123456789abcdef"), 34)) + ".biillpi.com" for _ in range(12)]
    f = dns_tunnel.detect_dns_tunnels(dns_frame(names, qtype=15, qtype_name="MX", gap=1.0))
    assert flagged(f) == {"biillpi.com"}
    ev = f.iloc[0]["evidence"]
    assert "encoded" in ev["signals"] and "unusual_qtypes" in ev["signals"] and "regular_timing" in ev["signals"]


@pytest.mark.parametrize("gap,count,rcode", [(20.0, 30, 0), (60.0, 20, 3), (300.0, 20, 0)])
def test_slow_base32_drip_is_flagged(session_builder, gap, count, rcode):
    """One base32 query every `gap` seconds, plain A queries: no rate threshold may hide it."""
    import base64
    import random

    data = random.Random(5).randbytes(20 * count)
    names = [base64.b32encode(data[i : i + 20]).decode().rstrip("=").lower() + f".{i}.drip.example.net" for i in range(0, len(data), 20)]
    d = dns_frame(names, rcode=rcode, gap=gap, answers=["192.0.2.1"] if rcode == 0 else None)
    f = dns_tunnel.detect_dns_tunnels(d)
    assert flagged(f) == {"example.net"}
    assert f.iloc[0]["evidence"]["encoding"] == "base32"


def test_exfil_session_flags_only_the_drip(exfil_session):
    logs = load_logs(exfil_session)
    f = dns_tunnel.detect_dns_tunnels(logs.dns, logs.conn)
    assert flagged(f) == {"example.net"}
    ev = f.iloc[0]["evidence"]
    assert "never_connected" in ev["signals"] and ev["connected_addresses"] == 0


def test_finding_schema_and_summary():
    rng = np.random.default_rng(2)
    alph = list("abcdefghijklmnopqrstuvwxyz234567")
    names = ["".join(rng.choice(alph, 50)) + ".t.biillpi.com" for _ in range(400)]
    f = dns_tunnel.detect_dns_tunnels(dns_frame(names, qtype=10, qtype_name="NULL", gap=0.1))
    assert list(f.columns) == FINDING_COLUMNS
    r = f.iloc[0]
    assert r["analyzer"] == "dns_tunnel" and str(r["severity"]) in SEVERITIES and r["indicator"] == "biillpi.com"
    assert EVIDENCE_KEYS <= set(r["evidence"])
    assert r["summary"].startswith("400 unique base32 subdomains in 40 s, 13 KB encoded, NULL queries")
    assert str(r["severity"]) == "critical"


def test_features_expose_names_and_domains():
    names = [f"{i:040x}.x.example.com" for i in range(5)]
    feats = dns_tunnel.tunnel_features(dns_frame(names))
    assert {"name", "registered_domain", "alphabet", "entropy_ratio", "encoded"} <= set(feats.names.columns)
    assert {"registered_domain", "unique_names", "score", "signals", "flagged"} <= set(feats.domains.columns)


def test_empty_and_odd_input():
    assert dns_tunnel.detect_dns_tunnels(pd.DataFrame()).empty
    d = dns_frame(["", ".", "x.example.com"])
    d.loc[0, "query"] = pd.NA
    assert dns_tunnel.detect_dns_tunnels(d).empty


# ---- recorded captures (root) ------------------------------------------------


@pytest.mark.root
def test_every_shared_capture_is_flagged(recorded_captures):
    """Each tunnel tool's session, recorded by our recorder, is flagged under its tunnel domain, and only that."""
    missed = {}
    for name, (session, domain) in recorded_captures.items():
        logs = load_logs(session)
        got = flagged(dns_tunnel.detect_dns_tunnels(logs.dns, logs.conn))
        if got != {domain}:
            missed[name] = got
    assert not missed, missed


def test_query_types_are_named_as_zeek_names_them_else_by_number():
    import numpy as np

    from cicd_audit.analyzers.dns_tunnel import _qtype_labels
    from cicd_audit.analyzers.dnsindex import Coded

    names = Coded(np.array([0, -1, -1, 1, 0, -1], np.int32), np.array(["A", "TXT"], dtype=object))
    types = np.array([1, 65399, np.nan, 16, 1, 65399], dtype=np.float32)
    codes, labels = _qtype_labels(names, types)
    assert labels[codes].tolist() == ["A", "TYPE65399", "-", "TXT", "A", "TYPE65399"]
    assert len(labels) == 4
