"""Unexpected destinations: policy, direct-to-IP, lookups outside the policy, baseline drift (pure tier)."""

import pytest

from cicd_audit.analyzers import analyze, load_logs
from cicd_audit.analyzers.destinations import destination_table, resolutions
from cicd_audit.policy import load_policy, parse_policy


def by(findings, analyzer):
    f = findings[findings["analyzer"] == analyzer]
    return {r.indicator: r for r in f.itertuples(index=False)}


@pytest.fixture(scope="module")
def policy(policy_file):
    return load_policy(policy_file)


def test_ordinary_job_is_clean_under_its_policy(ci_session, policy):
    r = analyze(load_logs(ci_session), policy=policy)
    assert r.findings.empty, r.findings[["analyzer", "indicator", "summary"]].to_string()
    s = r.summary
    assert s["unexpected_destinations"] == 0 and s["allowed_destinations"] == s["unique_destinations"] > 50


def test_exfil_job_under_policy(exfil_session, policy):
    r = analyze(load_logs(exfil_session), policy=policy)
    f = r.findings
    direct = by(f, "direct_ip")
    assert set(direct) == {"1.1.1.1", "198.51.100.23"}
    assert str(direct["1.1.1.1"].severity) == "high"  # public address
    assert str(direct["198.51.100.23"].severity) == "medium"
    unexpected = by(f, "unexpected_destination")
    assert set(unexpected) == {"example.org", "raw.githubusercontent.com"}
    up = unexpected["example.org"]
    assert str(up.severity) == "high" and up.evidence["orig_bytes"] == 2_500_000 and "paste.example.org" in up.summary
    port = unexpected["raw.githubusercontent.com"]
    assert port.evidence["reason"] == "port" and "allowed only on port(s) 443" in port.summary
    lookups = by(f, "unexpected_lookup")
    assert set(lookups) == {"beacon.test"}  # example.net is reported once, as the tunnel
    assert str(lookups["beacon.test"].severity) == "low"
    assert "example.net" in by(f, "dns_tunnel")
    # a lookup never outranks a connection
    sev = {str(r.severity) for r in f[f["analyzer"] == "unexpected_lookup"].itertuples()}
    assert sev <= {"info", "low"}


def test_without_policy_only_direct_ip_and_tunnels(exfil_session):
    f = analyze(load_logs(exfil_session)).findings
    # no policy findings; 1.1.1.1:443 with no name is also a known DoH resolver (audit mode, docs/analyze.md)
    assert set(f["analyzer"]) == {"direct_ip", "dns_tunnel", "encrypted_dns"}


def test_cidr_allows_direct_ip(exfil_session):
    p = parse_policy('allowed:\n  cidrs: ["1.1.1.1/32:443", "198.51.100.0/24"]\n')
    f = analyze(load_logs(exfil_session), policy=p).findings
    assert by(f, "direct_ip") == {}


def test_dns_answers_explain_connections_per_session(ci_session, exfil_session):
    logs = load_logs(ci_session, exfil_session)
    dest = destination_table(logs.conn, logs.dns)
    # the resolver's port-53 traffic and the service container are not direct-to-IP
    assert not dest[dest["resolver"]]["names"].map(len).any()
    pg = dest[dest["address"] == "172.18.0.2"]
    assert (pg["names"].map(lambda n: n == ["postgres"])).all()
    # 1.1.1.1 is explained in no session
    assert dest[dest["address"] == "1.1.1.1"]["names"].map(len).sum() == 0
    res = resolutions(logs.dns)
    assert {"session", "address", "name"} == set(res.columns)


def test_answer_from_another_session_explains_nothing(session_builder, tmp_path):
    SB = session_builder["SessionBuilder"]
    a = SB(start=1_760_000_000.0)
    a.lookup("files.pythonhosted.org", "A", answers=["151.101.0.223"])
    a.connect("151.101.0.223", 443)
    b = SB(start=1_760_000_500.0)
    b.connect("151.101.0.223", 443)  # no lookup in this session
    logs = load_logs(a.write(tmp_path / "a"), b.write(tmp_path / "b"))
    f = analyze(logs).findings
    d = by(f, "direct_ip")
    assert set(d) == {"151.101.0.223"} and d["151.101.0.223"].sessions == ["b"]


def test_baseline_reports_new_destinations_and_domains(ci_session, ci_session_other_run, exfil_session):
    r = analyze(load_logs(exfil_session), baseline=load_logs(ci_session, ci_session_other_run))
    new = by(r.findings, "new_destination")
    assert set(new) == {"1.1.1.1", "198.51.100.23", "example.org"}
    assert set(by(r.findings, "new_domain")) == {"beacon.test"}
    assert r.summary["baseline_sessions"] == 2


def test_same_job_against_its_own_baseline_is_quiet(ci_session, ci_session_other_run):
    r = analyze(load_logs(ci_session_other_run), baseline=load_logs(ci_session))
    assert r.findings.empty


def test_loopback_multicast_broadcast_are_not_destinations(session_builder, tmp_path):
    b = session_builder["SessionBuilder"]()
    for addr in ["127.0.0.1", "224.0.0.251", "255.255.255.255", "ff02::fb", "::1"]:
        b.connect(addr, 5353, proto="udp")
    f = analyze(load_logs(b.write(tmp_path / "s"))).findings
    assert f.empty


def _icmp(b, addr, itype, counterpart, orig="fd00:ca::1"):
    b.conn.append(
        {"ts": b.tick(), "uid": b.uid(), "id.orig_h": orig, "id.orig_p": itype, "id.resp_h": addr,
         "id.resp_p": counterpart, "proto": "icmp", "duration": 0.001, "orig_bytes": 24, "resp_bytes": 24,
         "conn_state": "OTH", "local_orig": True, "local_resp": True, "missed_bytes": 0, "history": "-",
         "orig_pkts": 1, "orig_ip_bytes": 72, "resp_pkts": 1, "resp_ip_bytes": 72, "ip_proto": 58 if ":" in addr else 1}
    )


def test_icmp_control_traffic_is_not_a_destination(session_builder, tmp_path):
    """Neighbour discovery, router solicitation, MLD, errors: the demo's false positive (fd00::2 via NS/NA)."""
    b = session_builder["SessionBuilder"](client="fd00:ca::1")
    for addr, itype, cp in [
        ("fd00:ca::2", 135, 136), ("fd00:ca::2", 136, 135),      # NS/NA for neighbour unreachability detection
        ("fe80::1", 133, 134), ("fe80::1", 134, 133),            # router solicitation/advertisement
        ("fd00:ca::2", 143, 0), ("fe80::2", 131, 130),           # MLDv2 report, MLD report
        ("2606:4700::1111", 1, 4), ("2606:4700::1111", 3, 0),    # ICMPv6 errors (unreachable, time exceeded)
        ("2606:4700::1111", 137, 0),                             # redirect
    ]:
        _icmp(b, addr, itype, cp)
    _icmp(b, "10.1.0.1", 3, 3, orig="10.1.0.4")    # ICMPv4 port unreachable
    _icmp(b, "10.1.0.1", 11, 0, orig="10.1.0.4")   # time exceeded
    _icmp(b, "10.1.0.1", 10, 9, orig="10.1.0.4")   # router solicitation
    logs = load_logs(b.write(tmp_path / "s"))
    r = analyze(logs)
    assert r.findings.empty, r.findings[["analyzer", "indicator", "summary"]].to_string()
    assert r.destinations["local"].all() and set(r.destinations["proto"]) == {"icmp"}
    assert r.summary["unique_destinations"] == 0
    # nor are they new destinations against an empty-ish baseline
    base = session_builder["SessionBuilder"](start=1_759_000_000.0)
    base.connect("140.82.112.3", 443)
    r = analyze(logs, baseline=load_logs(base.write(tmp_path / "base")))
    assert set(r.findings["analyzer"]) <= {"new_domain"}


def test_icmp_echo_is_still_a_destination(session_builder, tmp_path):
    """A ping (or an ICMP tunnel) to an address no DNS answer explains is direct-to-IP, v4 and v6."""
    b = session_builder["SessionBuilder"]()
    _icmp(b, "203.0.113.9", 8, 0, orig="10.1.0.4")
    _icmp(b, "203.0.113.9", 3, 0, orig="10.1.0.4")  # same address and resp_p, but an error: not counted
    _icmp(b, "2606:4700::6810:84e5", 128, 129, orig="fd00:ca::1")
    _icmp(b, "fd00:ca::2", 135, 136)
    f = analyze(load_logs(b.write(tmp_path / "s"))).findings
    d = by(f, "direct_ip")
    assert set(d) == {"203.0.113.9", "2606:4700::6810:84e5"}
    assert d["203.0.113.9"].evidence["protos"] == ["icmp"] and d["203.0.113.9"].evidence["connections"] == 1


def test_each_lookup_lists_the_addresses_answered_for_it_sorted(ci_session, exfil_session):
    from cicd_audit.analyzers.destinations import lookup_table
    from cicd_audit.analyzers.dnsindex import build_index

    index = build_index(load_logs(ci_session, exfil_session).dns)
    answered: dict = {}
    for s, a, n in resolutions(None, index).itertuples(index=False):
        answered.setdefault((s, n), []).append(a)
    lookups = lookup_table(None, index)
    for r in lookups.itertuples(index=False):
        assert r.addresses == tuple(sorted(answered.get((r.session, r.name), []))), (r.session, r.name)
    assert sum(len(a) > 1 for a in lookups["addresses"]) and sum(not a for a in lookups["addresses"])
