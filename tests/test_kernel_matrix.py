"""scripts/kernel_matrix.py's host side: reading the guest's CHECK lines, writing the table.

These are the parts that turn its output into docs/kernels.md, and one boot of Debian's 6.1 and
5.10 kernels with the `load` check (the same bytecode on every kernel), which CI runs with the rest.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cicd_audit_kernel_matrix", REPO / "scripts" / "kernel_matrix.py")
matrix = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = matrix            # dataclasses look their module up there
_spec.loader.exec_module(matrix)

GUEST_OUTPUT = """[    0.000000] Linux version 5.10.0-32-amd64
GUEST 5.10.0-32-amd64
CHECK load[live] ok 10 functions in 8.0 s
CHECK load[live-block] FAIL the verifier refused ca_dns_name: E2BIG | its last lines
CHECK verifier[ca_dns_name] ok processed 233796 insns (limit 1000000) max_states_per_insn 14
CHECK verifier[ca_tcp] ok processed 38449 insns (limit 1000000)
CHECK names ok 14 tests passed
CHECK block FAIL test_block_live.py::test_x: failed <b>refused</b>
"""


def test_checks_fold_variants_into_one_verdict():
    checks, insns = matrix.parse_checks(GUEST_OUTPUT)
    assert insns == "233796"
    assert checks["load"][0] is False and "ca_dns_name" in checks["load"][1]
    assert checks["names"] == (True, "")
    assert checks["block"][0] is False
    assert "pcap" not in checks


def test_table_rows_and_log_text_neutralised(tmp_path):
    checks, insns = matrix.parse_checks(GUEST_OUTPUT)
    result = matrix.KernelResult("5.10", "5.10.0-32-amd64", "Debian 11", "tcg", 301.4, checks, insns)
    out = tmp_path / "kernels.md"
    matrix.write_table([result], out)
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 5.10.0-32-amd64"))
    assert row.count("|") == len(matrix.CHECKS) + 6, "a pipe from the log must not add a column"
    assert "<b>" not in row and "**no**" in row and "not run" in row
    assert "| 233796 | tcg | 301 s |" in row


def test_every_check_in_the_suite_has_a_title_and_tests():
    assert set(matrix.CHECK_TITLES) == set(matrix.CHECKS)
    for name, nodes in matrix.PYTEST_CHECKS.items():
        assert name in matrix.CHECKS
        for node in nodes:
            assert (REPO / "tests" / node.split("::")[0]).exists(), node


@pytest.mark.root
@pytest.mark.slow
def test_the_same_bytecode_loads_and_files_udp_per_connect_on_debians_6_1_and_5_10_kernels():
    """The matrix's `load` and `udp` checks, booted for real (virtme-ng; software emulation where KVM
    cannot boot a stock kernel): every program variant compiled once on this host loads in each guest
    with the syscall loader, and the fentry hook, which this host's kernel refuses, files connected
    UDP sockets under their process there. The kernels were downloaded by scripts/install.sh --test;
    this runs offline. The fuller checks (pcap, live, blocking) are a manual run (docs/kernels.md)."""
    import os
    import subprocess

    assert os.geteuid() == 0, "boots kernels and loads BPF programs: run the suite as root"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "kernel_matrix.py"), "--offline",
                        "--kernels", "6.1,5.10", "--checks", "load,udp"], capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0 and "all kernels passed" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    passed = [line for line in r.stdout.splitlines() if "{'load': (True, ''), 'udp': (True, '')}" in line]
    assert [line.split(".")[0:2] for line in passed] == [["6", "1"], ["5", "10"]], r.stdout
