"""Audit-mode detectors (issue 14): the small exfiltrations of supply-chain attacks, with no policy (pure tier).

Each scenario is an ordinary CI job (conftest's ``ordinary_ci``) plus what a
compromised step adds, recorded by a process we name in conn.log's
``proc.*`` columns. Every scenario runs twice: as a first run with neither
policy nor baseline, and against a baseline of two clean runs of the job.
Negatives: the clean job itself and the shared real Zeek benign dns.logs.
"""

from __future__ import annotations

import base64
import random

import pandas as pd
import pytest

from cicd_audit.analyzers import analyze, load_logs
from cicd_audit.analyzers.beacons import beacon_score
from cicd_audit.analyzers.findings import at_or_above
from cicd_audit.analyzers.services import ServiceListError, load_services

AUDIT = {"known_service", "secret_in_query", "dns_callback", "encrypted_dns", "icmp_payload", "upload_volume", "beaconing"}

#: the process every scenario's malicious rows belong to; every other row is the build tool's
EVIL = {"proc.pid": 4242, "proc.name": "node", "proc.exe": "/usr/bin/node",
        "proc.step": "__actions_setup-node (actions/setup-node@v4)"}
BUILD = {"proc.pid": 1000, "proc.name": "make", "proc.exe": "/usr/bin/make", "proc.step": "build"}


class Job:
    """An ordinary CI job; rows created inside ``with job.evil():`` belong to the EVIL process."""

    def __init__(self, session_builder, seed=7):
        self.b = session_builder["ordinary_ci"](session_builder["SessionBuilder"](seed=seed))
        self.evil_uids = set()

    def evil(self):
        job = self

        class _Ctx:
            def __enter__(self):
                self.first = job.b._uid

            def __exit__(self, *exc):
                job.evil_uids |= {"C%017d" % u for u in range(self.first + 1, job.b._uid + 1)}

        return _Ctx()

    def logs(self, tmp_path, name):
        logs = load_logs(self.b.write(tmp_path / name))
        conn = logs.conn.copy()
        evil = conn["uid"].isin(self.evil_uids).to_numpy()
        for col in EVIL:
            conn[col] = [EVIL[col] if e else BUILD[col] for e in evil]
        return {"conn": conn, "dns": logs.dns}


@pytest.fixture(scope="module")
def baseline(session_builder, tmp_path_factory):
    """Two clean runs of the job (different seeds), one session each."""
    d = tmp_path_factory.mktemp("baseline")
    runs = [Job(session_builder, seed=s).logs(d, f"run{s}") for s in (11, 12)]
    conn = pd.concat([r["conn"].assign(session=f"run{i}") for i, r in enumerate(runs)], ignore_index=True)
    dns = pd.concat([r["dns"].assign(session=f"run{i}") for i, r in enumerate(runs)], ignore_index=True)
    return {"conn": conn, "dns": dns}


def audit(findings):
    return findings[findings["analyzer"].isin(AUDIT)]


def run_both(job, tmp_path, baseline, analyzer):
    """Findings of ``analyzer`` on a first run (no policy, no baseline) and against the baseline."""
    logs = job.logs(tmp_path, "session")
    out = []
    for base in (None, baseline):
        f = analyze(logs, baseline=base).findings
        out.append(f[f["analyzer"] == analyzer])
    return out


def assert_names_process(f):
    """The finding names the EVIL process: pid, name, executable and CI step, in evidence and summary."""
    assert len(f), "no finding"
    for r in f.itertuples(index=False):
        procs = r.evidence.get("processes")
        assert procs, r.summary
        assert {"pid": 4242, "name": "node", "exe": "/usr/bin/node",
                "step": EVIL["proc.step"]}.items() <= procs[0].items(), procs
        assert f"by node (pid 4242) in CI step {EVIL['proc.step']}" in r.summary


# ---- negatives ----------------------------------------------------------------------------------


def test_clean_job_has_no_audit_finding_at_medium_or_above(session_builder, tmp_path, baseline):
    logs = Job(session_builder, seed=5).logs(tmp_path, "clean")
    for base in (None, baseline):
        f = audit(at_or_above(analyze(logs, baseline=base).findings, "medium"))
        assert f.empty, f[["analyzer", "indicator", "summary"]].to_string()


def test_real_zeek_benign_logs_give_no_finding_at_medium_or_above(benign_sessions):
    assert len(benign_sessions) >= 3
    for name, d in benign_sessions.items():
        logs = load_logs(d)
        assert len(logs.dns) > 50, name
        f = at_or_above(analyze(logs).findings, "medium")
        assert f.empty, (name, f[["analyzer", "indicator", "summary"]].to_string())


# ---- dns_callback ---------------------------------------------------------------------------------


def _hex_labels(text: str, size=60):
    h = text.encode().hex()
    return [h[i : i + size] for i in range(0, len(h), size)]


@pytest.mark.parametrize("lookups", [1, 2])
def test_dependency_confusion_callback(session_builder, tmp_path, baseline, lookups):
    job = Job(session_builder)
    labels = _hex_labels("ci-runner-7:runner:/home/runner/work/app/app")
    with job.evil():
        if lookups == 1:
            job.b.lookup(".".join(labels[:3]) + ".x1.depconf-callback.com", "A", answers=["203.0.113.9"])
        else:  # the same data split over two names
            job.b.lookup(labels[0] + ".1.x1.depconf-callback.com", "A", answers=["203.0.113.9"])
            job.b.lookup(".".join(labels[1:3]) + ".2.x1.depconf-callback.com", "A", answers=["203.0.113.9"])
    for f in run_both(job, tmp_path, baseline, "dns_callback"):
        assert list(f["indicator"]) == ["depconf-callback.com"]
        r = f.iloc[0]
        assert r["severity"] == "high" and r["evidence"]["host_data"], r["summary"]
        assert any("/home/runner/work/app" in t for t in r["evidence"]["decoded"]), r["evidence"]
        assert_names_process(f)


def test_callback_to_a_domain_the_baseline_used_is_not_reported(session_builder, tmp_path, baseline):
    job = Job(session_builder)
    with job.evil():
        job.b.lookup(_hex_labels("uid=0(root) /root")[0] + ".pypi.org", "A", answers=["151.101.64.223"])
    first, with_base = run_both(job, tmp_path, baseline, "dns_callback")
    assert list(first["indicator"]) == ["pypi.org"]
    assert with_base.empty


def test_random_hex_labels_are_not_callbacks(session_builder, tmp_path, baseline):
    job = Job(session_builder)
    rng = random.Random(3)
    for _ in range(3):  # cache keys: random bytes, not text
        job.b.lookup(rng.randbytes(24).hex() + ".cache.some-cdn-example.net", "A", answers=["104.16.1.1"])
    for f in run_both(job, tmp_path, baseline, "dns_callback"):
        assert f.empty, f["summary"].tolist()


# ---- secret_in_query ------------------------------------------------------------------------------

_RNG = random.Random(1)
GH_TOKEN = "ghp_" + "".join(_RNG.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(36))
AWS_KEY = "AKIA" + "".join(_RNG.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def _split(s, size=60):
    return ".".join(s[i : i + size] for i in range(0, len(s), size))


ENCODINGS = {
    "raw": lambda t: t,
    "hex": lambda t: _split(t.encode().hex()),
    "base32": lambda t: _split(base64.b32encode(t.encode()).decode().rstrip("=")),
    "base64": lambda t: _split(base64.urlsafe_b64encode(t.encode()).decode().rstrip("=")),
}


@pytest.mark.parametrize("token,kind", [(GH_TOKEN, "github_token"), (AWS_KEY, "aws_access_key_id")])
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_token_in_a_query_name(session_builder, tmp_path, baseline, token, kind, encoding):
    job = Job(session_builder)
    with job.evil():
        # the recorder (like Zeek) lower-cases query names: base64 reaches the log without its case
        job.b.lookup((ENCODINGS[encoding](token) + ".t.collect-example.com").lower(), "A", answers=[], rcode=3)
    for f in run_both(job, tmp_path, baseline, "secret_in_query"):
        assert list(f["indicator"]) == ["collect-example.com"], f
        r = f.iloc[0]
        assert r["severity"] == "critical" and kind in r["evidence"]["credential_types"], r["summary"]
        text = r["summary"] + repr(r["evidence"])
        assert token.lower()[6:] not in text.lower() and token.encode().hex()[12:] not in text  # never re-leaked
        assert_names_process(f)


def test_token_split_over_two_queries(session_builder, tmp_path, baseline):
    job = Job(session_builder)
    h = GH_TOKEN.encode().hex()
    with job.evil():
        job.b.lookup(h[:40] + ".0.s.collect-example.com", "A", rcode=3)
        job.b.lookup(h[40:] + ".1.s.collect-example.com", "A", rcode=3)
    for f in run_both(job, tmp_path, baseline, "secret_in_query"):
        assert "github_token" in f.iloc[0]["evidence"]["credential_types"]


def test_ci_host_names_hold_no_credential(ci_names):
    from cicd_audit.analyzers.secret_names import find_credentials

    assert [n for n in ci_names if find_credentials(n)] == []


# ---- known_service --------------------------------------------------------------------------------


@pytest.mark.parametrize("name,connect,category,severity", [
    ("c9f1k2a7dl0qe.oast.fun", False, "oast", "high"),  # interaction server: the lookup is the signal
    ("webhook.site", True, "webhook", "high"),  # data posted to a request bin
    ("webhook.site", False, "webhook", "medium"),
    ("pastebin.com", True, "paste", "high"),
    ("a1b2-203-0-113-7.ngrok-free.app", True, "tunnel", "high"),
    ("ci-drop.duckdns.org", False, "dynamic_dns", "medium"),
])
def test_known_service(session_builder, tmp_path, baseline, name, connect, category, severity):
    job = Job(session_builder)
    with job.evil():
        job.b.lookup(name, "A", answers=["203.0.113.77"])
        if connect:
            job.b.connect("203.0.113.77", 443, orig_bytes=1800, resp_bytes=900)
    for f in run_both(job, tmp_path, baseline, "known_service"):
        assert len(f) == 1, f
        r = f.iloc[0]
        assert r["evidence"]["category"] == category and r["severity"] == severity, r["summary"]
        assert r["evidence"]["list"][0].startswith("exfil_services.yml v")
        assert_names_process(f)


def test_services_list_is_extensible_and_checked(tmp_path, session_builder, baseline):
    own = tmp_path / "own.yml"
    own.write_text("version: 3\ncategories:\n  webhook:\n    - hooks.internal-example.com\n")
    services = load_services(extra=[own])
    assert services.match("x.hooks.internal-example.com") == ("hooks.internal-example.com", "webhook")
    assert services.match("oast.fun") == ("oast.fun", "oast")  # the packaged list is still there
    assert services.sources[-1].endswith("own.yml v3")
    job = Job(session_builder)
    with job.evil():
        job.b.lookup("x.hooks.internal-example.com", "A", answers=["203.0.113.78"])
    logs = job.logs(tmp_path, "s")
    assert "known_service" not in set(analyze(logs).findings["analyzer"])
    f = analyze(logs, services_list=services).findings
    assert list(f[f["analyzer"] == "known_service"]["indicator"]) == ["hooks.internal-example.com"]
    bad = tmp_path / "bad.yml"
    bad.write_text("categories:\n  paste:\n    - 'not a domain/'\n")
    with pytest.raises(ServiceListError, match="bad.yml"):
        load_services(extra=[bad])


def test_ci_host_names_are_not_known_services(ci_names):
    services = load_services()
    assert [n for n in ci_names if services.match(n)] == []


# ---- encrypted_dns --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["dot", "doh_name", "doh_address"])
def test_encrypted_dns(session_builder, tmp_path, baseline, how):
    job = Job(session_builder)
    with job.evil():
        if how == "dot":
            job.b.connect("9.9.9.9", 853, orig_bytes=3000, resp_bytes=6000)
        elif how == "doh_name":
            job.b.lookup("dns.google", "A", answers=["8.8.8.8"])
            job.b.connect("8.8.8.8", 443, orig_bytes=3000, resp_bytes=6000)
        else:
            job.b.connect("1.0.0.1", 443, orig_bytes=3000, resp_bytes=6000)
    for f in run_both(job, tmp_path, baseline, "encrypted_dns"):
        assert len(f) == 1, f
        r = f.iloc[0]
        assert r["evidence"]["kind"] == ("DNS-over-TLS" if how == "dot" else "DNS-over-HTTPS")
        assert r["severity"] == "medium"
        assert_names_process(f)


# ---- icmp_payload ---------------------------------------------------------------------------------


def _icmp(b, addr, pkts, payload_per_pkt, t=None):
    t = b.tick() if t is None else t
    b.conn.append(
        {"ts": t, "uid": b.uid(), "id.orig_h": b.client, "id.orig_p": 8, "id.resp_h": addr, "id.resp_p": 0,
         "proto": "icmp", "service": None, "duration": pkts * 1.0, "orig_bytes": pkts * payload_per_pkt,
         "resp_bytes": pkts * payload_per_pkt, "conn_state": "OTH", "local_orig": True, "local_resp": False, "missed_bytes": 0,
         "history": None, "orig_pkts": pkts, "orig_ip_bytes": pkts * (payload_per_pkt + 28), "resp_pkts": pkts,
         "resp_ip_bytes": pkts * (payload_per_pkt + 28), "ip_proto": 1}
    )


@pytest.mark.parametrize("pkts,size,severity", [(20, 1000, "medium"), (100, 1400, "high")])
def test_icmp_echo_payload(session_builder, tmp_path, baseline, pkts, size, severity):
    job = Job(session_builder)
    with job.evil():
        _icmp(job.b, "203.0.113.30", pkts, size)
    for f in run_both(job, tmp_path, baseline, "icmp_payload"):
        assert list(f["indicator"]) == ["203.0.113.30"] and f.iloc[0]["severity"] == severity, f
        assert_names_process(f)


def test_ordinary_ping_and_an_mtu_probe_are_not_payload(session_builder, tmp_path, baseline):
    job = Job(session_builder)
    _icmp(job.b, "203.0.113.31", 4, 56)  # ping -c 4
    _icmp(job.b, "203.0.113.32", 3, 1472)  # ping -s 1472 -c 3: an MTU test
    for f in run_both(job, tmp_path, baseline, "icmp_payload"):
        assert f.empty, f["summary"].tolist()


def test_a_session_whose_only_icmp_is_not_to_a_destination_analyzes():
    """Only ICMP to addresses that are no destination (multicast, as IPv6 neighbour discovery
    sends): the detector had an empty list select no columns and crashed `analyze`."""
    from cicd_audit.analyzers.icmp_payload import icmp_payloads
    conn = pd.DataFrame({"proto": ["icmp"], "id.orig_h": ["fe80::1"], "id.orig_p": [135], "id.resp_h": ["ff02::1"],
                         "id.resp_p": [136], "orig_bytes": [900], "resp_bytes": [0], "orig_pkts": [3], "resp_pkts": [0]})
    assert icmp_payloads(conn).empty


# ---- upload_volume --------------------------------------------------------------------------------

ARTIFACTS = "artifacts.example-store.com"


def _upload_job(session_builder, seed, sent):
    job = Job(session_builder, seed=seed)
    job.b.lookup(ARTIFACTS, "A", answers=["203.0.113.60"])
    with job.evil() if sent > 1_000_000 else _Null():
        job.b.connect("203.0.113.60", 443, orig_bytes=sent, resp_bytes=2000)
    return job


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture(scope="module")
def upload_baseline(session_builder, tmp_path_factory):
    d = tmp_path_factory.mktemp("upload_base")
    runs = [_upload_job(session_builder, s, sent).logs(d, f"r{s}") for s, sent in ((21, 180_000), (22, 240_000), (23, 210_000))]
    return {k: pd.concat([r[k].assign(session=f"r{i}") for i, r in enumerate(runs)], ignore_index=True) for k in ("conn", "dns")}


@pytest.mark.parametrize("sent,severity", [(2_600_000, "medium"), (30_000_000, "high")])
def test_upload_far_above_the_baselines_distribution(session_builder, tmp_path, upload_baseline, sent, severity):
    job = _upload_job(session_builder, 7, sent)
    logs = job.logs(tmp_path, "s")
    assert "upload_volume" not in set(analyze(logs).findings["analyzer"])  # a first run has nothing to compare with
    f = analyze(logs, baseline=upload_baseline).findings
    f = f[f["analyzer"] == "upload_volume"]
    assert list(f["indicator"]) == ["example-store.com"] and f.iloc[0]["severity"] == severity, f
    assert f.iloc[0]["evidence"]["baseline_runs"] == 3 and f.iloc[0]["evidence"]["baseline_max"] == 240_000
    assert_names_process(f)


def test_upload_within_the_baselines_range_is_not_reported(session_builder, tmp_path, upload_baseline):
    logs = _upload_job(session_builder, 7, 600_000).logs(tmp_path, "s")  # 2.5x the largest: ordinary variation
    f = analyze(logs, baseline=upload_baseline).findings
    assert "upload_volume" not in set(f["analyzer"])


# ---- beaconing ------------------------------------------------------------------------------------


def _beacon(b, addr, n, period, jitter, size=420, rng=None):
    rng = rng or random.Random(5)
    t0 = b.t
    for i in range(n):
        b.connect(addr, 443, orig_bytes=size + rng.randint(-10, 10), resp_bytes=300, t=t0 + i * period + rng.uniform(-jitter, jitter))
    b.t = t0 + n * period


@pytest.mark.parametrize("period,jitter", [(30.0, 1.0), (60.0, 6.0)])
def test_near_periodic_beacon(session_builder, tmp_path, baseline, period, jitter):
    job = Job(session_builder)
    with job.evil():
        _beacon(job.b, "203.0.113.40", 20, period, jitter)
    first, with_base = run_both(job, tmp_path, baseline, "beaconing")
    for f in (first, with_base):
        assert list(f["indicator"]) == ["203.0.113.40"], f
        assert f.iloc[0]["evidence"]["score"] >= 0.8
        assert "no DNS answer explains it" in f.iloc[0]["summary"] and f.iloc[0]["severity"] == "medium"
        assert_names_process(f)
    assert "never contacted in the baseline" in with_base.iloc[0]["summary"]


def test_random_arrivals_and_bursts_are_not_beacons(session_builder, tmp_path, baseline):
    job = Job(session_builder)
    rng = random.Random(9)
    t = job.b.t
    for _ in range(30):  # Poisson arrivals, varied sizes: a test suite calling a service
        t += rng.expovariate(1 / 20)
        job.b.connect("203.0.113.41", 443, orig_bytes=rng.randint(200, 20000), resp_bytes=1000, t=t)
    job.b.t = t
    for f in run_both(job, tmp_path, baseline, "beaconing"):
        assert f.empty, f["summary"].tolist()


def test_beacon_score_separates_periodic_from_random():
    rng = random.Random(4)
    periodic = [i * 60 + rng.uniform(-2, 2) for i in range(30)]
    poisson, t = [], 0.0
    for _ in range(30):
        t += rng.expovariate(1 / 60)
        poisson.append(t)
    import numpy as np

    sizes = np.full(30, 400.0)
    assert beacon_score(np.array(periodic), sizes)["score"] >= 0.9
    assert beacon_score(np.array(poisson), np.array([rng.randint(100, 9000) for _ in range(30)], dtype=float))["score"] < 0.8
