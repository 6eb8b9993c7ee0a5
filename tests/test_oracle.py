"""Every Zeek oracle case (../shared/zeek-oracle) through `cicd-audit record --pcap`.

Cases, flags and the comparison are those of scripts/conformance.py (which
writes docs/conformance.md): the trace is recorded exactly as Zeek read it
(`-C` where meta.json says so; JSON where the baseline is JSON) and compared
by the oracle's _tools/zeek_compare.py --ignore uid --ignore service.

The cases failing today are strict xfails with the difference as the reason:
when a fix makes one pass, it shows up as XPASS(strict) -> failure, and this
list and docs/conformance.md must be updated with it. `wikipedia` is a hard
assertion, never xfail.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from cicd_audit.zeeklog.reader import read_log

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cicd_audit_conformance", REPO / "scripts" / "conformance.py")
conformance = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = conformance      # dataclasses look their module up there
_spec.loader.exec_module(conformance)

pytestmark = [pytest.mark.root, pytest.mark.slow]

KNOWN_FAILING: dict[str, str] = {}     # every case passes; a regression fails its test
MUST_PASS = {"wikipedia"}

CASES = conformance.list_cases() if conformance.ORACLE.exists() else []


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_FAILING[case.name])] if case.name in KNOWN_FAILING else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Each case recorded once per module run: name -> (Outcome, output directory)."""
    cache = {}

    def get(case):
        if case.name not in cache:
            out = tmp_path_factory.mktemp(case.name)
            cache[case.name] = (conformance.run_case(case, out), out)
        return cache[case.name]
    return get


def test_oracle_is_present_and_complete():
    assert conformance.ORACLE.is_dir(), f"{conformance.ORACLE} is missing (the shared Zeek oracle)"
    names = {c.name for c in CASES}
    assert len(CASES) == 38
    assert MUST_PASS <= names and set(KNOWN_FAILING) <= names
    assert not MUST_PASS & set(KNOWN_FAILING)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_matches_zeek(recorded, case):
    outcome, _ = recorded(case)
    assert outcome.record_status == 0, outcome.record_stderr
    assert outcome.compare_status == 0, "\n".join(outcome.differences(lines=20))


def _rows(out: Path, name: str) -> list[dict]:
    path = out / f"{name}.log"
    return list(read_log(path)[1]) if path.exists() else []


FIVE_TUPLE = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_dns_uids_join_conn_rows(recorded, case):
    outcome, out = recorded(case)
    assert outcome.record_status == 0, outcome.record_stderr
    conns = {r["uid"]: r for r in _rows(out, "conn")}
    for dns in _rows(out, "dns"):
        conn = conns.get(dns["uid"])
        assert conn is not None, f"dns.log uid {dns['uid']} ({dns['query']}) has no conn.log row"
        assert tuple(conn[k] for k in FIVE_TUPLE) == tuple(dns[k] for k in FIVE_TUPLE), (dns, conn)
