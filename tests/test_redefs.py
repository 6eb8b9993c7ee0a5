"""`--redef NAME=VALUE` (recorder/redefs.py): Zeek's DNS settings and Tunnel::max_depth, as Zeek takes them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cicd_audit.recorder.logs.dns.wire import ParseOptions
from cicd_audit.recorder.redefs import RedefError, Redefs, parse_redefs

CLI = str(Path(sys.executable).with_name("cicd-audit"))


def test_each_kind_goes_where_it_is_read_and_a_later_one_wins():
    redefs = parse_redefs(["Tunnel::max_depth=2", "dns_max_queries=3", " Tunnel::max_depth = 1 "])
    assert redefs.tunnel_max_depth == 1
    assert redefs.dns.max_queries == 3
    assert parse_redefs(["Tunnel::max_depth=0"]) == Redefs(dns=None, tunnel_max_depth=0)
    assert parse_redefs(["dns_skip_all_auth=F"]) == Redefs(ParseOptions(skip_all_auth=False), None)
    assert parse_redefs([]) == Redefs()


@pytest.mark.parametrize("item, says", [
    ("Tunnel::max_depth=5", "from 0 to 4"),
    ("Tunnel::max_depth=-1", "from 0 to 4"),
    ("Tunnel::max_depth=deep", "from 0 to 4"),
    ("Tunnel::max_depth", "NAME=VALUE"),
    ("Tunnel::max_changes_per_connection=3", "NAME=VALUE with NAME one of .*Tunnel::max_depth"),
    ("dns_max_queries", "NAME=VALUE"),
    ("tcp_inactivity_timeout=5", "NAME=VALUE"),
    ("dns_max_queries=-1", "a count"),
    ("dns_max_queries=three", "a count"),
    ("dns_skip_all_auth=true", "T or F"),
])
def test_anything_else_is_refused_saying_why(item, says):
    with pytest.raises(RedefError, match=says):
        parse_redefs([item])


@pytest.mark.parametrize("command", [["record", "--pcap", "none.pcap"], ["agent"]], ids=["record", "agent"])
@pytest.mark.parametrize("item, says", [
    ("dns_max_queries=many", "dns_max_queries: 'many' is not a count"),
    ("Tunnel::max_depth=9", "Tunnel::max_depth: '9' is not a count from 0 to 4"),
])
def test_a_bad_setting_is_a_usage_error(tmp_path, command, item, says):
    r = subprocess.run([CLI, *command, "--out", str(tmp_path / "out"), "--redef", item],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2
    assert f"--redef: {says}" in r.stderr
    assert "Traceback" not in r.stderr
