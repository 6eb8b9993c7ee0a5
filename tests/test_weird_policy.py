"""Which weirds weird.log gets: Zeek's Weird framework (weird_ignore, did_log, Weird::actions), in packet time."""

from __future__ import annotations

import pytest

from cicd_audit.recorder.logs import weird_policy
from cicd_audit.recorder.logs.events import ConnId
from cicd_audit.recorder.logs.session import SessionLog
from cicd_audit.recorder.logs.weird_policy import WeirdPolicy, identifier
from cicd_audit.zeeklog.reader import read_log

CONN = ConnId("10.0.0.1", 40000, "10.0.0.53", 53, 17)
OTHER_CONN = ConnId("10.0.0.1", 40001, "10.0.0.53", 53, 17)
FLOW = ConnId("10.0.0.1", 0, "10.0.0.53", 0, 17)


def test_identifiers_are_zeeks_id_string_flow_id_string_or_empty():
    assert identifier("Cx", CONN) == "10.0.0.1:40000 > 10.0.0.53:53"
    assert identifier(None, FLOW) == "10.0.0.1 -> 10.0.0.53"
    assert identifier(None, None) == ""


def test_a_connections_repeated_weird_is_logged_once_in_ten_minutes_then_again():
    policy = WeirdPolicy()
    logged = [policy.logs(t, "DNS_RR_unknown_type", "Cx", CONN) for t in (100.0, 101.0, 699.0)]
    assert logged == [True, False, False]
    assert policy.logs(700.0, "DNS_RR_unknown_type", "Cx", CONN)          # created at 100, expired at 700
    assert policy.repeats == 2


def test_another_name_or_connection_is_not_a_repeat():
    policy = WeirdPolicy()
    assert policy.logs(1.0, "DNS_RR_unknown_type", "Cx", CONN)
    assert policy.logs(1.0, "DNS_RR_bad_length", "Cx", CONN)
    assert policy.logs(1.0, "DNS_RR_unknown_type", "Cy", OTHER_CONN)
    assert policy.logs(1.0, "truncated_header", None, FLOW)      # a flow is not the connection


def test_weirds_about_nothing_in_particular_share_one_identifier():
    policy = WeirdPolicy()
    assert policy.logs(1.0, "truncated_IP")
    assert not policy.logs(2.0, "truncated_IP")


def test_checksum_weirds_are_logged_once_a_day_per_originator_across_connections():
    policy = WeirdPolicy()
    assert policy.logs(1.0, "bad_TCP_checksum", "Cx", CONN)
    assert not policy.logs(2.0, "bad_TCP_checksum", "Cy", OTHER_CONN)      # same originator
    assert not policy.logs(1000.0, "bad_TCP_checksum", "Cx", CONN)         # weird_ignore long gone
    assert policy.logs(3.0, "bad_TCP_checksum", "Cz", CONN._replace(orig_h="10.0.0.2"))
    assert policy.logs(1.0 + 86400, "bad_TCP_checksum", "Cy", OTHER_CONN)  # did_log expired


def test_a_flood_of_identifiers_forgets_the_oldest_and_so_logs_more_never_less(monkeypatch):
    monkeypatch.setattr(weird_policy, "MEMORY_MAX", 3)
    policy = WeirdPolicy()
    conns = [CONN._replace(orig_p=port) for port in range(5)]
    assert all(policy.logs(1.0, "DNS_RR_unknown_type", f"C{i}", c) for i, c in enumerate(conns))
    assert policy.logs(2.0, "DNS_RR_unknown_type", "C0", conns[0])          # forgotten: logged again
    assert not policy.logs(2.0, "DNS_RR_unknown_type", "C4", conns[4])      # remembered


@pytest.mark.parametrize("name", sorted(weird_policy.LOG_PER_ORIG))
def test_once_per_originator_names_are_zeeks(name):
    """ACTION_LOG_PER_ORIG in Zeek's base/frameworks/notice/weird.zeek: a second connection of the originator is a repeat."""
    policy = WeirdPolicy()
    assert policy.logs(1.0, name, "Cx", CONN)
    assert not policy.logs(2.0, name, "Cy", OTHER_CONN)


def test_a_session_logs_traffic_weirds_by_the_policy_and_every_recorder_weird(tmp_path):
    session = SessionLog(tmp_path / "out", "tsv", lambda ns: ns / 1e9)
    for ts in (1.0, 2.0):
        session.write_weird(ts, "DNS_RR_unknown_type", "", uid="Cx", conn_id=CONN, source="DNS")
        session.write_recorder_weird(ts, "cicd_audit_frame_rejected", f"packet record {int(ts)}: too short")
    stats = session.close({}, "pcap", 0.0)
    rows = [(w["ts"], w["name"], w["addl"], w["source"]) for w in read_log(tmp_path / "out" / "weird.log")[1]]
    # An empty addl is unset, as Zeek's conn_weird leaves it.
    assert rows == [(1.0, "DNS_RR_unknown_type", None, "DNS"),
                    (1.0, "cicd_audit_frame_rejected", "packet record 1: too short", None),
                    (2.0, "cicd_audit_frame_rejected", "packet record 2: too short", None)]
    assert stats["weirds"] == 4
