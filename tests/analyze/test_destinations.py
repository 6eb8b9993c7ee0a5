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
    assert set(f["analyzer"]) == {"direct_ip", "dns_tunnel"}


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
