"""`record --redef NAME=VALUE` (and `agent --redef`): Zeek's DNS settings as Zeek takes them on its command line.

What is refused, and how the command line says so: tests/test_redefs.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from frames import ether
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, UDP
from scapy.utils import wrpcap

from cicd_audit.recorder.logs.dns.redefs import parse_redefs
from cicd_audit.recorder.logs.dns.wire import ParseOptions
from cicd_audit.zeeklog.reader import read_log

CLI = str(Path(sys.executable).with_name("cicd-audit"))


def test_each_setting_fills_its_option_and_a_later_one_wins():
    options = parse_redefs(["dns_max_queries=3", "dns_max_compression_chain_depth=5", "dns_skip_all_auth=F",
                            "dns_skip_all_addl=F", "dns_max_queries=4"])
    assert (options.max_queries, options.max_compression_depth) == (4, 5)
    assert (options.skip_all_auth, options.skip_all_addl) == (False, False)
    assert parse_redefs([]) == ParseOptions()


@pytest.mark.root
def test_a_recording_takes_the_settings_zeek_ran_with(tmp_path):
    """Zeek's dns max-queries btest runs `zeek -r trace dns_max_queries=3`: a query of 4 questions is
    then over the limit (weird, history X, no dns.log row); by default (25) it is not."""
    query = DNS(id=5, qd=[DNSQR(qname=f"q{i}.example.com") for i in range(4)])
    packet = ether() / IP(src="10.4.0.1", dst="10.4.0.53") / UDP(sport=41000, dport=53) / query
    wrpcap(str(tmp_path / "q.pcap"), [packet])
    histories = {}
    for name, extra in (("default", []), ("redef", ["--redef", "dns_max_queries=3"])):
        out = tmp_path / name
        r = subprocess.run([CLI, "record", "--pcap", str(tmp_path / "q.pcap"), "--out", str(out), "--no-progress",
                            *extra], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        histories[name] = [c["history"] for c in read_log(out / "conn.log")[1]]
    assert histories == {"default": ["D"], "redef": ["DX"]}
    assert [w["name"] for w in read_log(tmp_path / "redef" / "weird.log")[1]] == ["DNS_Conn_count_too_large"]
