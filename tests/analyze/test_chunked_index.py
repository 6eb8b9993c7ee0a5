"""dns.log read chunk by chunk into the analyzers' index gives what the whole frame gives.

``analyze`` (the command) reads dns.log piece by piece into ``DnsIndex``
(``loading.load_for_analysis``) so that memory follows the index, not the log.
Every code in the index is given in order of first appearance in the whole log,
so the result must not depend on where the log was cut: these tests cut it
every few rows and compare with the whole frame, field by field and finding by
finding.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cicd_audit.analyzers.analysis import analyze
from cicd_audit.analyzers.dnsindex import IndexBuilder, build_index
from cicd_audit.analyzers.loading import load_for_analysis
from cicd_audit.analyzers.processes import proc_uid_index
from cicd_audit.zeeklog.reader import load_logs

from .report_sessions import blocked_job

#: Small enough that every test session's dns.log is read in many pieces.
TINY_CHUNK = 2048


@pytest.fixture(scope="module")
def sessions(session_builder, exfil_session, ci_session_other_run, tmp_path_factory):
    """A job recorded with processes (uids joining dns.log to conn.log's processes), a job
    with a DNS tunnel and a slow drip, and an ordinary run."""
    blocked = blocked_job(session_builder, tmp_path_factory.mktemp("chunked") / "blocked-job")
    return [blocked, exfil_session, ci_session_other_run]


def _cut(frame: pd.DataFrame, every: int):
    return [frame.iloc[i:i + every] for i in range(0, len(frame), every)]


def _assert_same_index(a, b):
    for field in ("name_code", "names", "spelling", "registered", "ts", "qtype", "rcode", "proc_row"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    for field in ("session", "qtype_name", "orig_h", "resp_h"):
        np.testing.assert_array_equal(getattr(a, field).decoded(), getattr(b, field).decoded(), err_msg=field)
    pd.testing.assert_frame_equal(a.resolutions.reset_index(drop=True), b.resolutions.reset_index(drop=True))
    assert (a.total_rows, a.ts_min, a.ts_max, a.resolvers, a.sessions) == \
        (b.total_rows, b.ts_min, b.ts_max, b.resolvers, b.sessions)


@pytest.mark.parametrize("every", [1, 7, 50])
def test_index_of_pieces_is_the_index_of_the_whole(sessions, every):
    logs = load_logs(*sessions)
    procs = proc_uid_index(logs.conn)
    assert procs is not None and len(procs), "the blocked job names processes: proc_row is exercised"
    whole = build_index(logs.dns, procs)
    builder = IndexBuilder(procs)
    for piece in _cut(logs.dns, every):
        builder.add(piece)
    builder.sessions_of(logs.dns)
    _assert_same_index(builder.finish(), whole)
    assert (whole.proc_row >= 0).any() and len(whole.resolutions) and len(whole.resolvers)


def _result_json(result) -> dict:
    findings = result.findings.drop(columns=["first_seen", "last_seen"], errors="ignore")
    return {
        "findings": json.loads(findings.to_json(orient="records", date_format="iso", default_handler=str)),
        "summary": result.summary,
        "lookups": json.loads(result.lookups.to_json(orient="records", date_format="iso", default_handler=str)),
        "destinations": json.loads(result.destinations.to_json(orient="records", date_format="iso", default_handler=str)),
        "domains": json.loads(result.tunnel.domains.to_json(orient="records", date_format="iso", default_handler=str)),
    }


@pytest.mark.parametrize("which", [[0], [1], [0, 1, 2]], ids=["processes", "tunnel", "three-sessions"])
def test_analysis_of_a_log_read_in_pieces_is_that_of_the_whole(sessions, which):
    dirs = [sessions[i] for i in which]
    names = [d.name for d in dirs]
    whole = analyze(load_logs(*dirs), sessions=names)
    pieces = analyze(load_for_analysis(*dirs, chunk_bytes=TINY_CHUNK), sessions=names)
    assert len(whole.findings), "nothing found: the comparison would prove little"
    assert _result_json(pieces) == _result_json(whole)


def test_a_baseline_read_in_pieces_is_the_same_baseline(sessions, ci_session):
    exfil, other = sessions[1], sessions[2]
    whole = analyze(load_logs(exfil), baseline=load_logs(ci_session, other))
    pieces = analyze(load_for_analysis(exfil, chunk_bytes=TINY_CHUNK),
                     baseline=load_for_analysis(ci_session, other, chunk_bytes=TINY_CHUNK))
    assert whole.summary["baseline_sessions"] == 2
    assert _result_json(pieces) == _result_json(whole)


def test_the_loaded_logs_hold_no_dns_frame(sessions):
    logs = load_for_analysis(sessions[1], chunk_bytes=TINY_CHUNK)
    assert logs.dns.empty and logs.dns_index.total_rows == len(load_logs(sessions[1]).dns) > 100


def test_name_features_in_batches_are_those_of_all_names_at_once(sessions, monkeypatch):
    from cicd_audit.analyzers import dns_tunnel

    logs = load_logs(sessions[1])
    at_once = dns_tunnel.tunnel_features(logs.dns, logs.conn)
    monkeypatch.setattr(dns_tunnel, "NAME_BATCH", 7)
    batched = dns_tunnel.tunnel_features(logs.dns, logs.conn)
    assert len(at_once.names) > 7 * 3, "one batch: the comparison would prove nothing"
    pd.testing.assert_frame_equal(batched.names, at_once.names)
    pd.testing.assert_frame_equal(batched.domains, at_once.domains)


def test_without_name_features_the_findings_are_the_same(sessions):
    logs = load_for_analysis(sessions[1], chunk_bytes=TINY_CHUNK)
    full = analyze(logs)
    lean = analyze(logs, name_features=False)
    assert lean.tunnel.names.empty and not full.tunnel.names.empty
    assert _result_json(lean) == _result_json(full)


@pytest.mark.parametrize("space", [40, 400])  # as many keys as the space allows, and a hash table's case
def test_factorize_keys_is_pandas_factorize(space):
    from cicd_audit.analyzers.dnsindex import factorize_keys

    key = np.random.default_rng(7).integers(0, space, 300)
    codes, uniq = factorize_keys(key, space)
    want_codes, want_uniq = pd.factorize(key)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(uniq, want_uniq)
