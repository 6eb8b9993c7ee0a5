"""Live recording at TC inside a fresh namespace pair (cicd_audit.lab), against
real clients (dig, curl, scapy) and servers (dnsmasq, http.server).

Every expected number is derived from what was put on the wire: the DNS sizes
from the message layout (dig +noedns +nocookie sends a bare question), the
HTTP byte counts from curl's own --trace-ascii of what it sent and received,
the crafted packets from their scapy definition.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cicd_audit.lab import CICD_AUDIT, DNS_NAME, HTTP_PORT, UNREACHABLE_V4, V4, V6
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

DIG = ["dig", "+noedns", "+nocookie", "+short", "+tries=1", "+time=3"]
# A bare question for www.example.test: header 12 + qname 18 + qtype/qclass 4.
DNS_QUERY_LEN = 12 + (1 + 3 + 1 + 7 + 1 + 4 + 1) + 4
DNS_A_ANSWER_LEN = DNS_QUERY_LEN + 2 + 10 + 4        # compressed name, fixed part, IPv4 rdata


def logs(out: Path, path: str) -> list[dict]:
    text = (out / f"{path}.log").read_text()
    assert text.rstrip("\n").splitlines()[-1].startswith("#close"), f"{path}.log is not closed"
    return list(read_log(out / f"{path}.log")[1])


def only(rows: list[dict], **match) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, f"expected one row with {match}, got {found} among {rows}"
    return found[0]


def assert_detached(lab) -> None:
    assert lab.tc_filters() == "", "a TC filter is still attached after the recorder exited"


def test_dig_against_dnsmasq_exact_rows(lab, tmp_path):
    r = lab.record(tmp_path, [*DIG, f"@{V4[1]}", DNS_NAME])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == V4[1]
    conn = only(logs(tmp_path, "conn"), proto="udp", **{"id.resp_p": 53})
    assert (conn["id.orig_h"], conn["id.resp_h"]) == V4
    assert conn["service"] == "dns"
    assert conn["conn_state"] == "SF"
    assert conn["history"] == "Dd"
    assert (conn["orig_pkts"], conn["resp_pkts"]) == (1, 1)
    assert (conn["orig_bytes"], conn["resp_bytes"]) == (DNS_QUERY_LEN, DNS_A_ANSWER_LEN)
    assert (conn["orig_ip_bytes"], conn["resp_ip_bytes"]) == (DNS_QUERY_LEN + 28, DNS_A_ANSWER_LEN + 28)
    dns = only(logs(tmp_path, "dns"))
    assert dns["uid"] == conn["uid"]
    assert (dns["id.orig_h"], dns["id.orig_p"], dns["id.resp_h"], dns["id.resp_p"], dns["proto"]) == \
        (conn["id.orig_h"], conn["id.orig_p"], conn["id.resp_h"], 53, "udp")
    assert dns["query"] == DNS_NAME
    assert (dns["qtype"], dns["qtype_name"]) == (1, "A")
    assert (dns["rcode"], dns["rcode_name"]) == (0, "NOERROR")
    assert list(dns["answers"]) == [V4[1]]
    assert dns["rtt"] is not None and 0 < dns["rtt"] < 3
    assert_detached(lab)


def test_live_community_id_and_likely_server_ports(lab, tmp_path):
    """The Zeek configuration options work live too: the extra column is there
    and matches the pcap path's computation of the same 5-tuple."""
    from cicd_audit.recorder.logs.conn_rows import community_id
    r = lab.record(tmp_path, [*DIG, f"@{V4[1]}", DNS_NAME], "--community-id", "--likely-server-ports", "bare,dns")
    assert r.returncode == 0, r.stderr
    conn = only(logs(tmp_path, "conn"), proto="udp", **{"id.resp_p": 53})
    assert conn["community_id"] == community_id(conn["id.orig_h"], conn["id.orig_p"], conn["id.resp_h"], 53, 17)
    assert conn["community_id"].startswith("1:")


def test_dig_is_the_commands_first_packet(lab, tmp_path):
    """The recorder attaches before starting the command: a lone query is not lost."""
    r = lab.record(tmp_path, [*DIG, f"@{V4[1]}", DNS_NAME])
    assert r.returncode == 0, r.stderr
    conn = only(logs(tmp_path, "conn"), proto="udp", **{"id.resp_p": 53})
    assert conn["orig_pkts"] == 1 and conn["history"][0] == "D"
    assert len(logs(tmp_path, "dns")) == 1


def test_curl_against_http_server(lab, tmp_path):
    trace = tmp_path / "curl.trace"
    out = tmp_path / "logs"
    r = lab.record(out, ["curl", "-s", "-o", "/dev/null", "--trace-ascii", str(trace),
                         f"http://{V4[1]}:{HTTP_PORT}/"])
    assert r.returncode == 0, r.stderr
    sent = sum(int(n) for n in re.findall(r"^=> Send (?:header|data), (\d+) bytes", trace.read_text(), re.M))
    received = sum(int(n) for n in re.findall(r"^<= Recv (?:header|data), (\d+) bytes", trace.read_text(), re.M))
    assert sent > 0 and received > 0
    conn = only(logs(out, "conn"), proto="tcp", **{"id.resp_p": HTTP_PORT})
    assert (conn["id.orig_h"], conn["id.resp_h"]) == V4
    assert conn["conn_state"] == "SF"
    # Both sides close; which FIN reaches the wire first is a race between
    # http.server (HTTP/1.0 closes after the response) and curl.
    assert conn["history"] in ("ShADadFf", "ShADadfF")
    assert conn["orig_bytes"] == sent
    assert conn["resp_bytes"] == received
    assert conn["missed_bytes"] == 0
    assert_detached(lab)


SCAPY = """
from scapy.all import IP, UDP, TCP, ICMP, conf, send, sr1
conf.verb = 0
send(IP(dst='{server}')/UDP(sport=40000, dport=9999)/b'hello')
send(IP(dst='{nobody}')/TCP(sport=40001, dport=80, flags='S'))
assert sr1(IP(dst='{server}')/ICMP(id=7, seq=1)/b'ping', timeout=3) is not None
"""


def test_crafted_packets(lab, tmp_path):
    script = SCAPY.format(server=V4[1], nobody=UNREACHABLE_V4)
    r = lab.record(tmp_path, [sys.executable, "-c", script])
    assert r.returncode == 0, r.stderr
    conns = logs(tmp_path, "conn")
    udp = only(conns, proto="udp", **{"id.resp_p": 9999})
    assert (udp["id.orig_h"], udp["id.orig_p"], udp["id.resp_h"]) == (V4[0], 40000, V4[1])
    assert (udp["conn_state"], udp["history"]) == ("S0", "D")
    assert (udp["orig_pkts"], udp["orig_ip_bytes"], udp["resp_pkts"], udp["resp_ip_bytes"]) == (1, 20 + 8 + 5, 0, 0)
    # The server's port-unreachable: its own icmp row (type 3, code 3), quoting the datagram.
    unreach = only(conns, proto="icmp", **{"id.orig_h": V4[1], "id.orig_p": 3})
    assert unreach["id.resp_p"] == 3
    assert (unreach["orig_pkts"], unreach["orig_ip_bytes"]) == (1, 20 + 8 + 20 + 8 + 5)
    syn = only(conns, proto="tcp", **{"id.resp_h": UNREACHABLE_V4})
    assert (syn["id.orig_p"], syn["id.resp_p"]) == (40001, 80)
    assert (syn["conn_state"], syn["history"]) == ("S0", "S")
    assert (syn["orig_pkts"], syn["orig_ip_bytes"], syn["resp_pkts"]) == (1, 40, 0)
    echo = only(conns, proto="icmp", **{"id.orig_h": V4[0], "id.resp_h": V4[1]})
    assert (echo["id.orig_p"], echo["id.resp_p"]) == (8, 0)
    assert (echo["orig_pkts"], echo["resp_pkts"]) == (1, 1)
    assert (echo["orig_bytes"], echo["resp_bytes"]) == (4, 4)
    assert (echo["orig_ip_bytes"], echo["resp_ip_bytes"]) == (32, 32)
    assert echo["conn_state"] == "OTH"


UDP_ECHO_PORT = 7777
UDP_DISCARD_PORT = 7778       # nobody listens: the stream's datagrams only go out
TICK_MAX = 0.010              # one jiffy at HZ=100, the slowest common tick
UDP_REPLY_DELAY = 0.003      # below one kernel tick (4 ms at HZ=250), above scheduling noise
UDP_ECHO = f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{V4[1]}", {UDP_ECHO_PORT}))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(100)
    time.sleep({UDP_REPLY_DELAY})
    s.sendto(data, peer)
"""
UDP_CLIENT = f"""
import socket, time
for i in range(5):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("{V4[0]}", 41000 + i))
    t0 = time.monotonic()
    s.sendto(b"ping", ("{V4[1]}", {UDP_ECHO_PORT}))
    s.recv(100)
    print(41000 + i, time.monotonic() - t0, flush=True)
# A one-way stream: its later datagrams are stamped with their jiffy's time.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{V4[0]}", 41100))
t0 = time.monotonic()
for i in range(21):
    s.sendto(b"data", ("{V4[1]}", {UDP_DISCARD_PORT}))
    t_sent = time.monotonic()
    time.sleep(0.01)
print("stream", t_sent - t0, flush=True)
"""


def test_request_reply_durations_use_the_exact_clock(lab, tmp_path):
    """Live packets are stamped with their jiffy's time (a tick behind at most);
    a reply that ends a request/response flow must still be stamped exactly,
    or conn.log durations would read 0 or a whole tick. A one-way stream's
    duration is right to within a tick."""
    server = lab.popen(lab.server_ns, [sys.executable, "-c", UDP_ECHO], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    r = lab.record(tmp_path, [sys.executable, "-c", UDP_CLIENT])
    assert r.returncode == 0, r.stderr
    rtts = {port: float(rtt) for port, rtt in (line.split() for line in r.stdout.splitlines())}
    stream_span = rtts.pop("stream")
    conns = logs(tmp_path, "conn")
    stream = only(conns, proto="udp", **{"id.orig_p": 41100})
    assert stream["orig_pkts"] == 21
    # Never ahead of the packets; at most a tick behind on the last one.
    assert stream_span - TICK_MAX - 0.001 <= stream["duration"] <= stream_span, (stream["duration"], stream_span)
    for port, rtt in rtts.items():
        conn = only(conns, proto="udp", **{"id.orig_p": int(port)})
        assert (conn["orig_pkts"], conn["resp_pkts"]) == (1, 1)
        # The kernel saw the request leave after the client's clock started and
        # the reply arrive before the client's recv() returned.
        assert UDP_REPLY_DELAY <= conn["duration"] <= rtt, (port, conn["duration"], rtt)


def test_ipv6_dns_and_http(lab, tmp_path):
    trace = tmp_path / "curl.trace"
    out = tmp_path / "logs"
    r = lab.record(out, ["sh", "-c", f"dig +noedns +nocookie +short AAAA @{V6[1]} {DNS_NAME} && "
                                     f"curl -s -g -o /dev/null --trace-ascii {trace} http://[{V6[1]}]:{HTTP_PORT}/"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == V6[1]
    conns = logs(out, "conn")
    udp = only(conns, proto="udp", **{"id.resp_p": 53})
    assert (udp["id.orig_h"], udp["id.resp_h"]) == V6
    assert (udp["conn_state"], udp["history"], udp["orig_pkts"], udp["resp_pkts"]) == ("SF", "Dd", 1, 1)
    aaaa_answer = DNS_QUERY_LEN + 2 + 10 + 16
    assert (udp["orig_ip_bytes"], udp["resp_ip_bytes"]) == (DNS_QUERY_LEN + 48, aaaa_answer + 48)
    dns = only(logs(out, "dns"))
    assert dns["uid"] == udp["uid"]
    assert (dns["qtype_name"], list(dns["answers"])) == ("AAAA", [V6[1]])
    http = only(conns, proto="tcp", **{"id.resp_p": HTTP_PORT})
    assert (http["id.orig_h"], http["id.resp_h"]) == V6
    sent = sum(int(n) for n in re.findall(r"^=> Send (?:header|data), (\d+) bytes", trace.read_text(), re.M))
    assert (http["conn_state"], http["orig_bytes"]) == ("SF", sent)


def test_dns_over_tcp(lab, tmp_path):
    r = lab.record(tmp_path, ["dig", "+tcp", "+short", f"@{V4[1]}", DNS_NAME])
    assert r.returncode == 0, r.stderr
    conn = only(logs(tmp_path, "conn"), proto="tcp", **{"id.resp_p": 53})
    assert conn["conn_state"] == "SF"
    assert conn["history"] in ("ShADadFf", "ShADadfF")     # which side closes first is a race
    assert conn["service"] == "dns"
    dns = only(logs(tmp_path, "dns"))
    assert (dns["proto"], dns["uid"], dns["query"], list(dns["answers"])) == ("tcp", conn["uid"], DNS_NAME, [V4[1]])
    assert dns["rcode_name"] == "NOERROR"


@pytest.mark.parametrize("status", [0, 3, 77])
def test_exit_status_is_the_commands(lab, tmp_path, status):
    r = lab.record(tmp_path, ["sh", "-c", f"exit {status}"])
    assert r.returncode == status, r.stderr
    assert_detached(lab)


def test_killed_command_exits_128_plus_signal(lab, tmp_path):
    r = lab.record(tmp_path, ["sh", "-c", "kill -KILL $$"])
    assert r.returncode == 128 + 9, r.stderr


def _wait_attached(lab, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.tc_filters():
            return
        assert proc.poll() is None, f"recorder exited early: {proc.communicate()}"
        time.sleep(0.2)
    raise AssertionError("recorder never attached")


def _assert_complete(out: Path) -> list[dict]:
    for name in ("conn", "dns", "weird", "capture_stats"):
        assert (out / f"{name}.log").exists(), f"{name}.log missing"
    stats = logs(out, "capture_stats")
    assert len(stats) == 1 and stats[0]["packets"] >= 2
    return logs(out, "conn")


def test_sigterm_without_command_writes_complete_logs(lab, tmp_path):
    proc = lab.popen(lab.client_ns, lab.record_argv(tmp_path),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_attached(lab, proc)
    assert lab.run(lab.client_ns, [*DIG, f"@{V4[1]}", DNS_NAME]).stdout.strip() == V4[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    udp = only(_assert_complete(tmp_path), proto="udp", **{"id.resp_p": 53})
    assert (udp["conn_state"], udp["history"], udp["orig_pkts"], udp["resp_pkts"]) == ("SF", "Dd", 1, 1)
    assert only(logs(tmp_path, "dns"))["uid"] == udp["uid"]
    assert_detached(lab)


def test_background_and_stop(lab, tmp_path):
    r = lab.record(tmp_path, None, "--background")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "recorder.pid").exists()
    assert lab.tc_filters() != ""
    assert lab.run(lab.client_ns, [*DIG, f"@{V4[1]}", DNS_NAME]).stdout.strip() == V4[1]
    s = lab.run(lab.client_ns, [CICD_AUDIT, "stop", str(tmp_path)])
    assert s.returncode == 0, s.stderr
    udp = only(_assert_complete(tmp_path), proto="udp", **{"id.resp_p": 53})
    assert (udp["conn_state"], udp["history"], udp["orig_pkts"], udp["resp_pkts"]) == ("SF", "Dd", 1, 1)
    assert only(logs(tmp_path, "dns"))["uid"] == udp["uid"]
    assert_detached(lab)


def test_second_recorder_on_the_same_interface_is_refused_clearly(lab, tmp_path):
    first = tmp_path / "first"
    assert lab.record(first, None, "--background").returncode == 0
    try:
        r = lab.record(tmp_path / "second", ["true"])
        assert r.returncode == 125, r.stderr        # the recorder's failure, never a status the command could have
        assert "already attached" in r.stderr and "Traceback" not in r.stderr
        # the refusal in one line, the last; before it, only the recorder's own one-line notices
        lines = r.stderr.strip().splitlines()
        assert [line for line in lines if "already attached" in line] == lines[-1:]
        assert all(line.startswith("cicd-audit: ") for line in lines), lines
        status = json.loads((tmp_path / "second" / "recorder.status").read_text())
        assert status["recording"] == "incomplete" and status["command_status"] is None
    finally:
        assert lab.run(lab.client_ns, [CICD_AUDIT, "stop", str(first)]).returncode == 0
    assert_detached(lab)


def test_lab_teardown_removes_namespaces_and_servers(lab):
    names = (lab.client_ns, lab.server_ns)
    servers = lab.processes
    assert len(servers) == 5 and all(p.poll() is None for p in servers)   # dnsmasq, 4 http.server
    lab.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(line.split()[0] in names for line in listed.splitlines())
    assert all(p.poll() is not None for p in servers)


PRIORITIES = """
import os, time
me = os.getpriority(os.PRIO_PROCESS, 0)
deadline = time.monotonic() + 10
while time.monotonic() < deadline and os.getpriority(os.PRIO_PROCESS, os.getppid()) == me:
    time.sleep(0.01)
print(me, os.getpriority(os.PRIO_PROCESS, os.getppid()))
"""


@pytest.mark.parametrize("nice", [None, "3"])
def test_the_recorder_gives_way_to_the_command_not_the_reverse(lab, tmp_path, nice):
    """The recorder's nice value goes up once the command runs; the command keeps the one it was given."""
    extra = () if nice is None else ("--nice", nice)
    r = lab.record(tmp_path, [sys.executable, "-c", PRIORITIES], *extra)
    assert r.returncode == 0, r.stderr
    command, recorder = map(int, r.stdout.split())
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert command == ours
    assert recorder == min(19, ours + (10 if nice is None else int(nice)))
