"""Fixtures for the analyze tests: paths to ../shared data and small CI sessions built on the fly.

Sessions are generated at test time with the project's own Zeek log writer
(never committed as logs): an ordinary CI job (registries, CDN and tenant
hashes, GitHub Actions hosts, telemetry IDs, random-label CDN lookups,
reverse lookups, underscore TXT names, a service container), and the same job
with a slow base32 DNS drip, direct-to-IP connections, an upload to a domain
outside the policy and a lookup nobody connected to.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
DNS_DATA = SHARED / "dns-tunnel-data"
FIXTURES = REPO / "tests" / "fixtures" / "analyze"

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "NULL": 10, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "HTTPS": 65}
RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN"}

# public blocks the generated answers come from (real providers' ranges, so
# the addresses are "global" like real CI destinations)
_BLOCKS = ["140.82.112", "185.199.108", "151.101.64", "13.107.42", "52.216.8", "104.16.24", "34.120.5", "20.60.40"]


def needs_shared(path: Path) -> Path:
    """path, below ../shared; fails (never skips) when it is missing: developers and CI always have it."""
    if not path.exists():
        pytest.fail(f"shared data missing: {path} (../shared must sit beside the repository)", pytrace=False)
    return path


def ci_hostnames() -> list[str]:
    lines = (FIXTURES / "ci_hostnames.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def address_for(name: str, k: int = 0) -> str:
    h = hashlib.sha256(f"{name}/{k}".encode()).digest()
    return f"{_BLOCKS[h[0] % len(_BLOCKS)]}.{1 + h[1] % 250}"


class SessionBuilder:
    """Collects dns.log and conn.log rows of one synthetic session and writes them with LogWriter."""

    def __init__(self, start=1_760_000_000.0, client="10.1.0.4", resolver="127.0.0.53", seed=7):
        self.t = start
        self.client = client
        self.resolver = resolver
        self.rng = random.Random(seed)
        self.dns, self.conn = [], []
        self._uid = 0

    def uid(self):
        self._uid += 1
        return "C%017d" % self._uid

    def tick(self, seconds=None):
        self.t += self.rng.uniform(0.01, 0.5) if seconds is None else seconds
        return self.t

    def lookup(self, name, qtype="A", answers=(), rcode=0, resolver=None, ttl=60.0, t=None):
        t = self.tick() if t is None else t
        resolver = resolver or self.resolver
        uid = self.uid()
        sport = self.rng.randint(32768, 60999)
        self.conn.append(
            {"ts": t, "uid": uid, "id.orig_h": self.client, "id.orig_p": sport, "id.resp_h": resolver, "id.resp_p": 53,
             "proto": "udp", "service": "dns", "duration": 0.002, "orig_bytes": 20 + len(name), "resp_bytes": 40 + 16 * len(answers),
             "conn_state": "SF", "local_orig": True, "local_resp": True, "missed_bytes": 0, "history": "Dd",
             "orig_pkts": 1, "orig_ip_bytes": 48 + len(name), "resp_pkts": 1, "resp_ip_bytes": 68 + 16 * len(answers), "ip_proto": 17}
        )
        self.dns.append(
            {"ts": t, "uid": uid, "id.orig_h": self.client, "id.orig_p": sport, "id.resp_h": resolver, "id.resp_p": 53,
             "proto": "udp", "trans_id": self.rng.randint(0, 65535), "rtt": 0.002, "query": name, "qclass": 1,
             "qclass_name": "C_INTERNET", "qtype": QTYPES[qtype], "qtype_name": qtype, "rcode": rcode,
             "rcode_name": RCODES[rcode], "AA": False, "TC": False, "RD": True, "RA": True, "Z": 0,
             "answers": list(answers) if answers else None, "TTLs": [ttl] * len(answers) if answers else None,
             "rejected": False}
        )
        return t

    def connect(self, addr, port, proto="tcp", orig_bytes=2000, resp_bytes=20000, t=None, duration=1.5):
        t = self.tick() if t is None else t
        self.conn.append(
            {"ts": t, "uid": self.uid(), "id.orig_h": self.client, "id.orig_p": self.rng.randint(32768, 60999),
             "id.resp_h": addr, "id.resp_p": port, "proto": proto, "service": "ssl" if port == 443 else None,
             "duration": duration, "orig_bytes": orig_bytes, "resp_bytes": resp_bytes, "conn_state": "SF",
             "local_orig": True, "local_resp": False, "missed_bytes": 0, "history": "ShADadFf",
             "orig_pkts": 10, "orig_ip_bytes": orig_bytes + 520, "resp_pkts": 12, "resp_ip_bytes": resp_bytes + 624,
             "ip_proto": 6 if proto == "tcp" else 17}
        )

    def write(self, directory, fmt="tsv"):
        from cicd_audit.zeeklog.schema import load_schema
        from cicd_audit.zeeklog.writer import LogWriter

        os.makedirs(directory, exist_ok=True)
        for name, rows in (("dns", self.dns), ("conn", self.conn)):
            with LogWriter(directory, load_schema(name), fmt=fmt, flush_interval=0, open_time=self.t) as w:
                for r in sorted(rows, key=lambda r: r["ts"]):
                    w.write(r)
        return Path(directory)


def ordinary_ci(b: SessionBuilder) -> SessionBuilder:
    """An ordinary CI job: every name of ci_hostnames.txt, looked up the way software does."""
    for name in ci_hostnames():
        if name.endswith(".arpa"):
            b.lookup(name, "PTR", answers=["dns.google"] if name.startswith("4.4.8.8") else [], rcode=0 if name.startswith("4.4") else 3)
            continue
        if name.split(".")[0].startswith("_") or "._" in name:
            qt = "SRV" if "._tcp." in name else "TXT"
            b.lookup(name, qt, answers=["TXT 44 v=DMARC1; p=reject; rua=mailto:d@example.com"] if qt == "TXT" else [])
            continue
        addrs = [address_for(name, 0), address_for(name, 1)]
        answers = ([f"{name.split('.')[0]}.edge.example-cdn.net"] if len(name) % 3 == 0 else []) + addrs
        for _ in range(1 + len(name) % 3):
            b.lookup(name, "A", answers=answers)
        b.lookup(name, "AAAA", answers=[])
        b.connect(addrs[0], 443, orig_bytes=1500 + len(name) * 40, resp_bytes=50_000 + len(name) * 1000)
    # random-label CDN lookups: 20 cache-key names, fetched from the CDN
    for i in range(20):
        label = hashlib.md5(f"asset{i}".encode()).hexdigest()[:16]
        b.lookup(f"{label}.cdn.jsdelivr.net", "A", answers=["cdn.jsdelivr.net.cdn.cloudflare.net", "104.16.85.20", "104.16.86.20"])
        b.connect("104.16.85.20", 443, orig_bytes=900, resp_bytes=30_000)
    # a service container reached by its name through Docker's resolver
    b.lookup("postgres", "A", answers=["172.18.0.2"], resolver="127.0.0.11")
    b.connect("172.18.0.2", 5432, orig_bytes=4000, resp_bytes=9000)
    return b


def b32_chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield base64.b32encode(data[i : i + size]).decode().rstrip("=").lower()


def exfil_extras(b: SessionBuilder, drip_queries: int = 30, drip_gap: float = 20.0) -> SessionBuilder:
    """What a compromised step adds to the job."""
    secret = random.Random(1).randbytes(20 * drip_queries)
    t0 = b.t
    for i, label in enumerate(b32_chunks(secret, 20)):
        if i >= drip_queries:
            break
        t = t0 + i * drip_gap + b.rng.uniform(-1.0, 1.0)
        b.lookup(f"{label}.{i}.d.example.net", "A", answers=["192.0.2.1"], t=t)
    b.t = max(b.t, t0 + drip_queries * drip_gap)
    b.connect("1.1.1.1", 443, orig_bytes=5200, resp_bytes=3100)
    b.connect("198.51.100.23", 4444, orig_bytes=800, resp_bytes=200)
    b.lookup("paste.example.org", "A", answers=["93.184.215.14"])
    b.connect("93.184.215.14", 443, orig_bytes=2_500_000, resp_bytes=4000)
    raw = address_for("raw.githubusercontent.com", 0)
    b.connect(raw, 22, orig_bytes=3000, resp_bytes=3000)
    b.lookup("beacon.test", "A", answers=[], rcode=3)
    return b


@pytest.fixture(scope="session")
def ci_session(tmp_path_factory) -> Path:
    return ordinary_ci(SessionBuilder()).write(tmp_path_factory.mktemp("ci") / "ci-clean")


@pytest.fixture(scope="session")
def ci_session_other_run(tmp_path_factory) -> Path:
    return ordinary_ci(SessionBuilder(start=1_760_100_000.0, seed=8)).write(tmp_path_factory.mktemp("ci") / "ci-run-2")


@pytest.fixture(scope="session")
def exfil_session(tmp_path_factory) -> Path:
    b = exfil_extras(ordinary_ci(SessionBuilder(start=1_760_200_000.0, seed=9)))
    return b.write(tmp_path_factory.mktemp("ci") / "ci-exfil")


@pytest.fixture(scope="session")
def policy_file() -> Path:
    return FIXTURES / "policy.yml"


# ---------------------------------------------------------------------------
# sessions recorded by `cicd-audit record --pcap` (root tier)


def _cicd_audit_cmd():
    exe = Path(sys.executable).with_name("cicd-audit")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cicd_audit.cli"]


def record_pcap(pcap: Path, out: Path) -> Path:
    """Run `cicd-audit record --pcap PCAP -C --out OUT` (needs root and bcc).

    -C as with Zeek: some shared captures were taken with checksum offloading
    (every packet of dns2tcp_netrack has a bad UDP checksum).
    """
    if os.geteuid() != 0:
        pytest.skip("record --pcap needs root")
    proc = subprocess.run(
        _cicd_audit_cmd() + ["record", "--pcap", str(pcap), "-C", "--no-progress", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"record --pcap {pcap.name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return out


TUNNEL_CAPTURES = {
    # capture directory -> the registered domain the tool tunnels through
    "iodine": "biillpi.com",
    "dnscat2": "biillpi.com",
    "dns2tcp": "hsc.fr",
    "dnsexfiltrator": "hsc.fr",
    "sods": "hsc.fr",
    "iodine_elastic": "pirate.sea",
    "dns2tcp_netrack": "hidemyself.org",
}


@pytest.fixture(scope="session")
def recorded_captures(tmp_path_factory) -> dict:
    """{capture name: (session directory recorded from ../shared/dns-tunnel-data/pcaps/<name>/, tunnel domain)}."""
    base = needs_shared(DNS_DATA / "pcaps")
    out = {}
    root = tmp_path_factory.mktemp("recorded")
    for name in TUNNEL_CAPTURES:
        pcaps = sorted((base / name).glob("*.pcap"))
        assert pcaps, f"no pcap in {base / name}"
        out[name] = (record_pcap(pcaps[0], root / name), TUNNEL_CAPTURES[name])
    return out


@pytest.fixture(scope="session")
def benign_sessions(tmp_path_factory) -> dict:
    """{log name: session directory holding that real Zeek dns.log (gz kept)}."""
    base = needs_shared(DNS_DATA / "benign")
    out = {}
    for p in sorted(base.iterdir()):
        if ".log" not in p.name:
            continue
        d = tmp_path_factory.mktemp("benign") / p.name.split(".")[0]
        d.mkdir()
        shutil.copy(p, d / ("dns.log.gz" if p.name.endswith(".gz") else "dns.log"))
        out[p.name] = d
    return out


@pytest.fixture(scope="session")
def ci_names() -> list:
    return ci_hostnames()


@pytest.fixture(scope="session")
def dns_data() -> Path:
    """../shared/dns-tunnel-data, computed from this file's location (fails when absent)."""
    return needs_shared(DNS_DATA)


@pytest.fixture(scope="session")
def labeled(dns_data):
    """labeled("netrack_iodine_names.csv") -> DataFrame(label, qname)."""
    import pandas as pd

    def load(name):
        return pd.read_csv(needs_shared(dns_data / "labeled_qnames" / name), keep_default_na=False)

    return load


@pytest.fixture(scope="session")
def session_builder():
    """The SessionBuilder class plus the scenario helpers, for tests that build their own sessions."""
    return {"SessionBuilder": SessionBuilder, "ordinary_ci": ordinary_ci, "exfil_extras": exfil_extras}
