"""`record --pcap` writes the same logs with the compiled parts of the per-frame and per-message paths as without them.

Every capture of ../shared (the Zeek oracle's traces and the DNS-tunnel
captures) is recorded twice, once with CICD_AUDIT_PURE_PYTHON=1; every log
must hold the same rows (uids aside: they are random, and the rows are
compared as sets since connections ending in the same sweep come out in
either order). The pure run must also say that it ran in pure Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import shared
from zeek_rows import rows_uids_masked

pytestmark = [pytest.mark.root, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("cicd-audit"))


def captures() -> list[Path]:
    oracle = sorted(shared("zeek-oracle").glob("*/trace.pcap*"))
    tunnels = sorted(shared("dns-tunnel-data", "pcaps").rglob("*.pcap"))
    return oracle + tunnels


def record(pcap: Path, out: Path, pure: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, CICD_AUDIT_PURE_PYTHON="1" if pure else "0")
    return subprocess.run([CLI, "record", "--pcap", str(pcap), "--out", str(out), "--no-progress", "-C"],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("pcap", captures(), ids=lambda p: p.parent.name)
def test_the_same_logs_with_and_without_the_compiled_parts(pcap, tmp_path):
    compiled_run = record(pcap, tmp_path / "compiled", pure=False)
    pure_run = record(pcap, tmp_path / "pure", pure=True)
    assert compiled_run.returncode == pure_run.returncode, (compiled_run.stderr, pure_run.stderr)
    assert "pure Python" not in compiled_run.stderr
    assert "parts of the per-frame and per-message paths run in pure Python" in pure_run.stderr
    logs = sorted(p.name for p in (tmp_path / "compiled").glob("*.log"))
    assert logs == sorted(p.name for p in (tmp_path / "pure").glob("*.log"))
    for name in logs:
        if name == "capture_stats.log":
            continue        # its run-time columns differ between any two runs
        assert rows_uids_masked(tmp_path / "compiled" / name) == rows_uids_masked(tmp_path / "pure" / name), name
