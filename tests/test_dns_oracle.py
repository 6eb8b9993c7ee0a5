"""Zeek's own dns.log baselines reproduced from their pcaps (tests/dns_pcap_harness.py).

Cases come from ../shared/zeek-oracle (see its README); a case runs with
checksum validation unless Zeek's run used -C.
"""

import json

import dns_pcap_harness as H
import pytest
from shared_data import shared

ORACLE = shared("zeek-oracle")
EXPECTED_NAMES = ("dns.log", "dns.cut.log", "dns.json")


def _cases():
    out = []
    for d in sorted(ORACLE.iterdir()):
        if d.is_dir() and not d.name.startswith("_"):
            for f in EXPECTED_NAMES:
                if (d / f).exists():
                    out.append(pytest.param(d, f, id=d.name))
                    break
    return out


CASES = _cases()


@pytest.mark.parametrize("case_dir, expected", CASES)
def test_oracle_case(case_dir, expected):
    meta = json.loads((case_dir / "meta.json").read_text())
    rows = H.run_pcap(str(case_dir / "trace.pcap"), validate_checksums="-C" not in meta["flags"])
    compare = H.compare_json if expected.endswith(".json") else H.compare_tsv
    missing, unexpected = compare(rows, str(case_dir / expected))
    assert not missing and not unexpected, (
        "missing:\n" + "\n".join(map(str, missing)) + "\nunexpected:\n" + "\n".join(map(str, unexpected)))


def test_every_dns_case_is_covered():
    names = {p.id for p in CASES}
    assert {"wikipedia", "dns-tcp-tkey", "dns-mdns-no-assoc", "dns-reply-only-flip",
            "dns-dynamic-update", "dns-tm1t-doc-json"} <= names
