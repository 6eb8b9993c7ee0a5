"""Zeek's own dns.log baselines reproduced from their pcaps (tests/dns_pcap_harness.py).

Cases come from /work/shared/zeek-oracle (see its README); a case runs with
checksum validation unless Zeek's run used -C. The test is skipped when the
oracle is not present.
"""

import json
import os
from pathlib import Path

import pytest

import dns_pcap_harness as H

ORACLE = Path(os.environ.get("ZEEK_ORACLE", "/work/shared/zeek-oracle"))
EXPECTED_NAMES = ("dns.log", "dns.cut.log", "dns.json")


def _cases():
    if not ORACLE.is_dir():
        return []
    out = []
    for d in sorted(ORACLE.iterdir()):
        if d.is_dir() and not d.name.startswith("_"):
            for f in EXPECTED_NAMES:
                if (d / f).exists():
                    out.append(pytest.param(d, f, id=d.name))
                    break
    return out


CASES = _cases()


@pytest.mark.skipif(not CASES, reason=f"no Zeek oracle at {ORACLE}")
@pytest.mark.parametrize("case_dir, expected", CASES)
def test_oracle_case(case_dir, expected):
    meta = json.loads((case_dir / "meta.json").read_text())
    rows = H.run_pcap(str(case_dir / "trace.pcap"), validate_checksums="-C" not in meta["flags"])
    compare = H.compare_json if expected.endswith(".json") else H.compare_tsv
    missing, unexpected = compare(rows, str(case_dir / expected))
    assert not missing and not unexpected, (
        "missing:\n" + "\n".join(map(str, missing)) + "\nunexpected:\n" + "\n".join(map(str, unexpected)))


def test_every_dns_case_is_covered():
    if not CASES:
        pytest.skip("no oracle")
    names = {p.id for p in CASES}
    assert {"wikipedia", "dns-tcp-tkey", "dns-mdns-no-assoc", "dns-reply-only-flip",
            "dns-dynamic-update", "dns-tm1t-doc-json"} <= names
