"""The recorder's command line: help for every command, usage errors as one
line with exit 2, and the message a non-root user gets (exit 3).

Help and usage errors go through click's CliRunner (no root, nothing loaded);
the non-root check runs the installed entry point as `nobody` with setpriv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cicd_audit.cli import main

CLI = str(Path(sys.executable).with_name("cicd-audit"))
PCAP = Path(__file__).resolve().parents[1].parent / "shared" / "zeek-oracle" / "wikipedia" / "trace.pcap"


def _commands(group: click.Group, prefix=()):
    """Every command path, through list_commands/get_command (main loads some lazily)."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


ALL_COMMANDS = [()] + list(_commands(main))


def test_the_recorder_commands_exist():
    assert {("record",), ("stop",), ("analyze",)} <= set(ALL_COMMANDS)


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "cicd-audit")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help(path, flag):
    r = CliRunner().invoke(main, [*path, flag])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("Usage: ")
    assert r.output.splitlines()[0].startswith(" ".join(["Usage: main", *path]))
    body = r.output.split("\n", 2)[2].strip()
    assert body, f"{path}: help has no description"


def test_record_help_shows_examples_and_options():
    out = CliRunner().invoke(main, ["record", "--help"]).output
    for option in ("--out", "--iface", "--pcap", "--format", "--ignore-checksums", "--background"):
        assert option in out
    assert "cicd-audit stop" in out and "exit status" in out


def test_version():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("cicd-audit, version ")


@pytest.mark.parametrize("args, message", [
    (["--pcap", str(PCAP), "--", "true"], "--pcap cannot be combined"),
    (["--pcap", str(PCAP), "--iface", "eth0"], "--pcap cannot be combined"),
    (["--pcap", str(PCAP), "--background"], "--pcap cannot be combined"),
    (["--background", "--", "true"], "--background records until"),
], ids=["pcap+command", "pcap+iface", "pcap+background", "background+command"])
def test_usage_errors_are_one_line_exit_2(tmp_path, args, message):
    """Exit 2; 125 where a command was to be recorded, so the recorder's failure is never read as
    the command's own status 2 (docs/exit-status.md)."""
    r = CliRunner().invoke(main, ["record", "--out", str(tmp_path / "out"), *args])
    assert r.exit_code == (125 if "--" in args else 2), r.output
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("cicd-audit: ") and message in lines[0], r.stderr
    assert not (tmp_path / "out").exists(), "a usage error must not create the output directory"


@pytest.mark.parametrize("args", [
    ["record"],                                          # --out is required
    ["record", "--out", "x", "--format", "xml"],
    ["record", "--out"],
    ["stop"],
    ["no-such-command"],
], ids=["record-no-out", "bad-format", "out-without-value", "stop-no-dir", "unknown-command"])
def test_click_usage_errors_exit_2(args):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_stop_without_a_recorder(tmp_path):
    r = CliRunner().invoke(main, ["stop", str(tmp_path)])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        f"cicd-audit: no background recorder for {tmp_path} ({tmp_path}/recorder.pid does not exist)"]


def test_missing_pcap_is_one_line_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["record", "--pcap", str(tmp_path / "absent.pcap"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [f"cicd-audit: {tmp_path / 'absent.pcap'}: no such file"]


@pytest.mark.root
@pytest.mark.parametrize("args", [["--", "true"], ["--pcap", str(PCAP)]], ids=["live", "pcap"])
def test_non_root_gets_a_clear_message(args):
    """Run as nobody (setpriv) with an output directory nobody may create: exit 3 (125 around a
    command), one line, a hint."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop privileges"
    base = Path(tempfile.mkdtemp(prefix="cicd-audit-nonroot-"))   # pytest's tmp_path is 0700 root
    try:
        os.chmod(base, 0o777)
        r = subprocess.run([setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups",
                            CLI, "record", "--out", str(base / "out"), *args],
                           capture_output=True, text=True, timeout=120, cwd="/")
    finally:
        shutil.rmtree(base)
    assert r.returncode == (125 if "--" in args else 3), (r.returncode, r.stderr)
    assert r.stderr.strip().splitlines() == [
        "cicd-audit: loading BPF programs needs root: run with sudo (or as root in the CI job)"]


@pytest.mark.root
def test_uncreatable_out_dir_is_one_line_exit_2(tmp_path):
    (tmp_path / "file").write_text("not a directory\n")
    r = subprocess.run([CLI, "record", "--pcap", str(PCAP), "--out", str(tmp_path / "file" / "out")],
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cicd-audit: ") and str(tmp_path / "file") in lines[0]
