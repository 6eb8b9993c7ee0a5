"""scripts/kernel_matrix.py's host side: reading the guest's CHECK lines, writing the table.

These are the parts that turn its output into docs/kernels.md, the unpacking of both package
layouts Debian and Ubuntu ship kernels in, and one boot of Debian's newest, 6.1 and 5.10 kernels
and Ubuntu 24.04's with the `load` and `udp` checks, which CI runs with the rest.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
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


def _deb(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    """A minimal binary package holding files (path -> text)."""
    tree = tmp_path / f"{name}-tree"
    for relative, text in files.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text(text)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(f"Package: {name}\nVersion: 1\nArchitecture: amd64\n"
                                             f"Maintainer: test <t@example.org>\nDescription: test\n")
    deb = tmp_path / f"{name}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True, capture_output=True)
    return deb


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb builds the packages (Debian/Ubuntu have it)")
@pytest.mark.parametrize("split", [False, True], ids=["one-package", "split-under-usr"])
def test_both_package_layouts_unpack_to_boot_and_lib_modules(tmp_path, split):
    """Up to Debian 13 the image package holds /boot/vmlinuz-R and /lib/modules/R; its backports
    split image, modules and config into three packages under /usr/lib/modules/R. Either way the
    guest boots root/boot/vmlinuz-R with the modules at root/lib/modules/R."""
    release = "9.9.9+deb13-amd64"
    if split:
        base = f"usr/lib/modules/{release}"
        debs = [_deb(tmp_path, "binary", {f"{base}/vmlinuz.unsigned": "image"}),
                _deb(tmp_path, "modules", {f"{base}/kernel/net/x.ko": "module"}),
                _deb(tmp_path, "base", {f"{base}/config": "CONFIG_X=y", f"{base}/modules.builtin": ""})]
    else:
        debs = [_deb(tmp_path, "image", {f"boot/vmlinuz-{release}": "image", f"boot/config-{release}": "CONFIG_X=y",
                                         f"lib/modules/{release}/kernel/net/x.ko": "module"})]
    root = tmp_path / "root"
    matrix._unpack(debs, release, root)
    assert (root / "boot" / f"vmlinuz-{release}").read_text() == "image"
    assert (root / "boot" / f"config-{release}").read_text() == "CONFIG_X=y"
    assert (root / "lib" / "modules" / release / "kernel" / "net" / "x.ko").read_text() == "module"
    assert not (root / "lib" / "modules" / release / "vmlinuz.unsigned").exists()


def test_packages_without_an_image_are_refused(tmp_path):
    deb = _deb(tmp_path, "modules", {"usr/lib/modules/9.9.9-amd64/kernel/x.ko": "module"})
    with pytest.raises(SystemExit, match="no kernel image"):
        matrix._unpack([deb], "9.9.9-amd64", tmp_path / "root")


def test_a_guest_that_never_started_is_booted_once_more_and_the_log_says_so(tmp_path, monkeypatch):
    """vng exiting with no output at all (the VM never started) gets one more boot; a guest that
    booted and failed its checks does not."""
    runs = tmp_path / "runs"
    fake = tmp_path / "vng"
    fake.write_text("#!/bin/sh\necho x >> " + str(runs) + "\n"
                    "[ $(wc -l < " + str(runs) + ") -ge 2 ] && echo 'GUEST 9.9' && echo 'CHECK load ok'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(matrix, "VNG", fake)
    vmlinuz = tmp_path / "boot" / "vmlinuz-9.9"
    output, _ = matrix.run_guest(vmlinuz, tmp_path, "tcg", ["load"], tmp_path / "log")
    assert output.startswith("vng exited with status 3 and no output at all; booted again")
    assert matrix.parse_checks(output)[0]["load"] == (True, "")
    assert runs.read_text().count("x") == 2 and (tmp_path / "log").read_text() == output
    output, _ = matrix.run_guest(vmlinuz, tmp_path, "tcg", ["load"], tmp_path / "log")
    assert runs.read_text().count("x") == 3 and "booted again" not in output


def test_every_check_in_the_suite_has_a_title_and_tests():
    assert set(matrix.CHECK_TITLES) == set(matrix.CHECKS)
    for name, nodes in matrix.PYTEST_CHECKS.items():
        assert name in matrix.CHECKS
        for node in nodes:
            assert (REPO / "tests" / node.split("::")[0]).exists(), node


@pytest.mark.root
@pytest.mark.slow
def test_the_same_bytecode_loads_and_files_udp_per_connect_on_debians_and_ubuntus_kernels():
    """The matrix's `load` and `udp` checks, booted for real (virtme-ng; software emulation where KVM
    cannot boot a stock kernel): every program variant compiled once on this host loads in each guest
    with the syscall loader, and the fentry hook, which this host's kernel refuses, files connected
    UDP sockets under their process there: on 6.13 and later (Debian's newest kernel), where UDP's
    connect() has a function of its own, as on Debian's 6.1 and 5.10 and Ubuntu 24.04's 6.8 (its own
    build and configuration). The kernels were downloaded by scripts/install.sh --test; this runs
    offline. The fuller checks (pcap, live, blocking) are a manual run (docs/kernels.md)."""
    import os
    import subprocess

    assert os.geteuid() == 0, "boots kernels and loads BPF programs: run the suite as root"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "kernel_matrix.py"), "--offline",
                        "--kernels", "newest,6.1,5.10,ubuntu-24.04", "--checks", "load,udp"], capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0 and "all kernels passed" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    passed = [line for line in r.stdout.splitlines() if "{'load': (True, ''), 'udp': (True, '')}" in line]
    versions = [tuple(int(part) for part in line.split("-")[0].split("+")[0].split(".")[:2]) for line in passed]
    assert len(versions) == 4 and versions[0] >= (6, 13) and versions[1:] == [(6, 1), (5, 10), (6, 8)], r.stdout
