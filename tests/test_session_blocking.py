"""SessionLog with process attribution and blocking mode: kernel events in, logs read back. Pure: no root.

Events are built with the abi structs and fed as raw bytes, as the ring buffer
delivers them; the logs are read back with cicd_audit.zeeklog.reader.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
from pathlib import Path

import dns_wire
import pytest

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.logs.processes import ProcessTable
from cicd_audit.recorder.logs.session import SessionLog
from cicd_audit.zeeklog.reader import read_log
from cicd_audit.zeeklog.schema import load_schema

T0 = 1_700_000_000_000_000_000     # event times in ns; to_epoch is the identity in seconds


def to_epoch(ns: int) -> float:
    return ns / 1e9


def addr16(text: str) -> bytes:
    a = ipaddress.ip_address(text)
    return bytes(10) + b"\xff\xff" + a.packed if a.version == 4 else a.packed


def conn_key(a: str, pa: int, b: str, pb: int, proto: int) -> abi.ConnKey:
    """Slot 0 holds a, slot 1 holds b (tests pick the slots; the kernel orders them)."""
    k = abi.ConnKey()
    k.addr[0][:], k.addr[1][:] = addr16(a), addr16(b)
    k.port[0], k.port[1] = pa, pb
    k.ip_proto = proto
    return k


def process(tgid: int, comm: bytes = b"", cgroup_id: int = 0) -> abi.Process:
    return abi.Process(tgid=tgid, pid=tgid + 1 if tgid else 0, cgroup_id=cgroup_id, comm=comm)


def header(struct_type, kind: abi.EventType, ts_ns: int) -> abi.EventHeader:
    return abi.EventHeader(type=kind, size=ctypes.sizeof(struct_type), ts_ns=ts_ns)


def process_event(proc: abi.Process, ts_ns: int) -> bytes:
    return bytes(abi.ProcessEvent(hdr=header(abi.ProcessEvent, abi.EventType.PROCESS, ts_ns), proc=proc))


def blocked_event(key, ts_ns, proc, reason, where, src_slot=0, conn_id=0, name=b"") -> bytes:
    ev = abi.BlockedEvent(hdr=header(abi.BlockedEvent, abi.EventType.BLOCKED, ts_ns), key=key, conn_id=conn_id,
                          proc=proc, reason=reason, where=where, src_slot=src_slot, name_len=len(name))
    ev.name = name
    return bytes(ev)


def dns_event(key, ts_ns, conn_id, from_orig, payload: bytes) -> bytes:
    ev = abi.DnsEvent(hdr=header(abi.DnsEvent, abi.EventType.DNS, ts_ns), key=key, conn_id=conn_id, orig_slot=0,
                      from_orig=from_orig, payload_len=len(payload), captured_len=len(payload))
    return bytes(ev)[: abi.DnsEvent.payload.offset] + payload


def udp_end(key, conn_id, first_ns, last_ns, proc, flags=0, orig_bytes=40, resp_bytes=0) -> bytes:
    ev = abi.ConnEndEvent(hdr=header(abi.ConnEndEvent, abi.EventType.CONN_END, last_ns), key=key,
                          reason=abi.EndReason.TIMEOUT)
    c = ev.conn
    c.id, c.first_ns, c.last_ns, c.orig_slot, c.flags, c.proc = conn_id, first_ns, last_ns, 0, flags, proc
    c.ep[0].state, c.ep[0].pkts, c.ep[0].ip_bytes, c.ep[0].payload_bytes = abi.UDP_ACTIVE, 1, 28 + orig_bytes, orig_bytes
    if resp_bytes:
        c.ep[1].state, c.ep[1].pkts, c.ep[1].ip_bytes, c.ep[1].payload_bytes = abi.UDP_ACTIVE, 1, 28 + resp_bytes, resp_bytes
    return bytes(ev)


def tcp_syn_end(key, conn_id, ts_ns, proc, flags, orig_slot=0) -> bytes:
    """A connection whose only packet, a SYN, blocking mode dropped."""
    ev = abi.ConnEndEvent(hdr=header(abi.ConnEndEvent, abi.EventType.CONN_END, ts_ns), key=key,
                          reason=abi.EndReason.TIMEOUT)
    c = ev.conn
    c.id, c.first_ns, c.last_ns, c.orig_slot, c.flags, c.proc = conn_id, ts_ns, ts_ns, orig_slot, flags, proc
    c.ep[0].state, c.ep[0].pkts, c.ep[0].ip_bytes = abi.TcpState.SYN_SENT, 1, 60
    c.history, c.history_len = b"S", 1
    return bytes(ev)


def feed(session: SessionLog, raw: bytes) -> None:
    session.on_event(raw, len(raw))


def rows(path: Path, schema):
    _, records = read_log(path, schema=schema)
    return [{name: r.get(name) for name in schema.names} for r in records]


@pytest.fixture
def host(tmp_path):
    """A fake /proc and cgroup root, so process columns are known in advance."""
    proc_root, cgroup_root = tmp_path / "proc", tmp_path / "cgroup"
    for tgid, exe, cmdline in ((4242, "/usr/bin/curl", b"curl\0-s\0https://cdn.example/\0"),
                               (17, "/usr/bin/dig", b"dig\0evil.example\0")):
        (proc_root / str(tgid)).mkdir(parents=True)
        (proc_root / str(tgid) / "exe").symlink_to(exe)
        (proc_root / str(tgid) / "cmdline").write_bytes(cmdline)
    (cgroup_root / "ci" / "job-1").mkdir(parents=True)
    job = os.stat(cgroup_root / "ci" / "job-1").st_ino
    table = ProcessTable(keep_cmdline=True, proc_root=proc_root, cgroup_root=cgroup_root)
    return table, job


CONN_EXTRA = ("proc.pid", "proc.name", "proc.exe", "proc.cmdline", "proc.cgroup", "proc.step", "blocked")


def conn_schema():
    return load_schema("conn").extended(load_schema("conn_process")).extended(load_schema("conn_blocked"))


def notice_schema():
    return load_schema("notice").extended(load_schema("notice_process"))


ZEEK_NOTICE_DEFAULTS = {"fuid": None, "file_mime_type": None, "file_desc": None, "n": None, "peer_descr": None,
                        "actions": ["Notice::ACTION_LOG"], "email_dest": [], "suppress_for": 0.0,
                        "remote_location.country_code": None, "remote_location.region": None,
                        "remote_location.city": None, "remote_location.latitude": None,
                        "remote_location.longitude": None}


def run_session(out: Path, fmt: str, table: ProcessTable, job: int) -> dict:
    s = SessionLog(out, fmt, to_epoch, processes=table, blocking=True)
    curl, dig = process(4242, b"curl", job), process(17, b"dig", job)
    python = process(99, b"python3", job)               # no PROCESS event, and not in /proc
    feed(s, process_event(curl, T0))
    feed(s, process_event(dig, T0))
    # curl resolves cdn.example (a CNAME) to 203.0.113.9; the resolver is allowed, the address is not.
    dns_key = conn_key("10.0.0.5", 40001, "10.0.0.2", 53, 17)
    answer = dns_wire.reply("cdn.example", [dns_wire.rr("cdn.example", 5, dns_wire.name("edge.example")),
                                            dns_wire.rr("edge.example", 1, bytes([203, 0, 113, 9]))])
    feed(s, dns_event(dns_key, T0 + 1_000_000, 5, 1, dns_wire.query("cdn.example")))
    feed(s, dns_event(dns_key, T0 + 2_000_000, 5, 0, answer))
    # ... and its SYN to that address is dropped at TC. Slot 1 is the sender here.
    tcp_key = conn_key("203.0.113.9", 443, "10.0.0.5", 40000, 6)
    feed(s, blocked_event(tcp_key, T0 + 3_000_000, curl, abi.BlockReason.ADDRESS, abi.BlockWhere.TC,
                          src_slot=1, conn_id=7))
    # dig asks for a name the policy lacks.
    dig_key = conn_key("10.0.0.5", 40002, "10.0.0.2", 53, 17)
    feed(s, blocked_event(dig_key, T0 + 4_000_000, dig, abi.BlockReason.DNS_NAME, abi.BlockWhere.TC,
                          conn_id=9, name=b"evil.example"))
    # python3's connect() is refused by the cgroup hook before a local port exists.
    refused_key = conn_key("0.0.0.0", 0, "198.51.100.7", 22, 6)
    feed(s, blocked_event(refused_key, T0 + 5_000_000, python, abi.BlockReason.ADDRESS, abi.BlockWhere.CONNECT))
    # A raw packet from an unknown process, IPv6 UDP.
    v6_key = conn_key("2001:db8::1", 443, "2001:db8::5", 50000, 17)
    feed(s, blocked_event(v6_key, T0 + 6_000_000, process(0), abi.BlockReason.ADDRESS, abi.BlockWhere.TC,
                          src_slot=1, conn_id=11))
    # The connections end.
    feed(s, udp_end(dns_key, 5, T0 + 1_000_000, T0 + 2_000_000, curl, resp_bytes=80))
    feed(s, tcp_syn_end(tcp_key, 7, T0 + 3_000_000, curl, abi.CONN_BLOCKED, orig_slot=1))
    feed(s, udp_end(dig_key, 9, T0 + 4_000_000, T0 + 4_000_000, dig, abi.CONN_DNS_BLOCKED))
    kernel = {"packets": 1, "rb_drop_conn": 1, "rb_drop_dns": 2, "rb_drop_weird": 3, "rb_drop_blocked": 4,
              "rb_drop_process": 5, "blocked_connects": 1, "blocked_packets": 2, "blocked_dns": 1,
              "addrs_learnt": 0, "allow_table_full": 6}
    return s.close(kernel, "eth0", 1.0)


@pytest.mark.parametrize("fmt", ["tsv", "json"])
def test_blocking_session_logs(tmp_path, host, fmt):
    table, job = host
    stats = run_session(tmp_path, fmt, table, job)

    conn = rows(tmp_path / "conn.log", conn_schema())
    assert [c["uid"] is not None for c in conn] == [True] * 4
    refused, dns, syn, dig = conn
    curl_cols = {"proc.pid": 4242, "proc.name": "curl", "proc.exe": "/usr/bin/curl",
                 "proc.cmdline": "curl -s https://cdn.example/", "proc.cgroup": "/ci/job-1", "proc.step": None}
    dig_cols = {"proc.pid": 17, "proc.name": "dig", "proc.exe": "/usr/bin/dig", "proc.cmdline": "dig evil.example",
                "proc.cgroup": "/ci/job-1", "proc.step": None}
    assert refused == {
        "ts": pytest.approx((T0 + 5_000_000) / 1e9), "uid": refused["uid"],
        "id.orig_h": "0.0.0.0", "id.orig_p": 0, "id.resp_h": "198.51.100.7", "id.resp_p": 22,
        "proto": "tcp", "service": None, "duration": None, "orig_bytes": None, "resp_bytes": None,
        "conn_state": "OTH", "local_orig": True, "local_resp": True, "missed_bytes": 0, "history": None,
        "orig_pkts": 0, "orig_ip_bytes": 0, "resp_pkts": 0, "resp_ip_bytes": 0, "tunnel_parents": None,
        "ip_proto": 6,
        "proc.pid": 99, "proc.name": "python3", "proc.exe": None, "proc.cmdline": None, "proc.cgroup": "/ci/job-1", "proc.step": None,
        "blocked": True,
    }
    assert {k: dns[k] for k in ("id.orig_h", "id.resp_p", "service", "conn_state") + CONN_EXTRA} == {
        "id.orig_h": "10.0.0.5", "id.resp_p": 53, "service": "dns", "conn_state": "SF", **curl_cols,
        "blocked": False}
    assert {k: syn[k] for k in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "history", "conn_state")
            + CONN_EXTRA} == {
        "id.orig_h": "10.0.0.5", "id.orig_p": 40000, "id.resp_h": "203.0.113.9", "id.resp_p": 443,
        "history": "S", "conn_state": "S0", **curl_cols, "blocked": True}
    assert {k: dig[k] for k in CONN_EXTRA} == {**dig_cols, "blocked": True}

    notices = rows(tmp_path / "notice.log", notice_schema())
    assert notices == [
        {"ts": pytest.approx((T0 + 3_000_000) / 1e9), "uid": syn["uid"],
         "id.orig_h": "10.0.0.5", "id.orig_p": 40000, "id.resp_h": "203.0.113.9", "id.resp_p": 443,
         "proto": "tcp", "note": "CicdAudit::Blocked_Connection",
         "msg": "curl (pid 4242) tried to connect to 203.0.113.9:443/tcp: not allowed by the policy",
         "sub": "cdn.example", "src": "10.0.0.5", "dst": "203.0.113.9", "p": 443,
         **ZEEK_NOTICE_DEFAULTS, **curl_cols},
        {"ts": pytest.approx((T0 + 4_000_000) / 1e9), "uid": dig["uid"],
         "id.orig_h": "10.0.0.5", "id.orig_p": 40002, "id.resp_h": "10.0.0.2", "id.resp_p": 53,
         "proto": "udp", "note": "CicdAudit::Blocked_DNS_Query",
         "msg": "dig (pid 17) queried evil.example: name not in the policy",
         "sub": "evil.example", "src": "10.0.0.5", "dst": "10.0.0.2", "p": 53,
         **ZEEK_NOTICE_DEFAULTS, **dig_cols},
        {"ts": pytest.approx((T0 + 5_000_000) / 1e9), "uid": refused["uid"],
         "id.orig_h": "0.0.0.0", "id.orig_p": 0, "id.resp_h": "198.51.100.7", "id.resp_p": 22,
         "proto": "tcp", "note": "CicdAudit::Blocked_Connection",
         "msg": "python3 (pid 99) tried to connect to 198.51.100.7:22/tcp: not allowed by the policy",
         "sub": None, "src": "0.0.0.0", "dst": "198.51.100.7", "p": 22, **ZEEK_NOTICE_DEFAULTS,
         "proc.pid": 99, "proc.name": "python3", "proc.exe": None, "proc.cmdline": None, "proc.cgroup": "/ci/job-1",
         "proc.step": None},
        {"ts": pytest.approx((T0 + 6_000_000) / 1e9), "uid": notices[3]["uid"],
         "id.orig_h": "2001:db8::5", "id.orig_p": 50000, "id.resp_h": "2001:db8::1", "id.resp_p": 443,
         "proto": "udp", "note": "CicdAudit::Blocked_Connection",
         "msg": "unknown process tried to send to [2001:db8::1]:443/udp: not allowed by the policy",
         "sub": None, "src": "2001:db8::5", "dst": "2001:db8::1", "p": 443, **ZEEK_NOTICE_DEFAULTS,
         "proc.pid": None, "proc.name": None, "proc.exe": None, "proc.cmdline": None, "proc.cgroup": None, "proc.step": None},
    ]
    assert notices[3]["uid"] not in {c["uid"] for c in conn}     # its connection has not ended yet

    (cs,) = rows(tmp_path / "capture_stats.log", load_schema("capture_stats"))
    assert cs["ringbuf_drops"] == 1 + 2 + 3 + 4 + 5 == stats["ringbuf_drops"]
    assert {k: cs[k] for k in ("blocked_connects", "blocked_packets", "blocked_dns", "addrs_learnt",
                               "allow_table_full", "connections")} == {
        "blocked_connects": 1, "blocked_packets": 2, "blocked_dns": 1, "addrs_learnt": 0, "allow_table_full": 6,
        "connections": 4}


def test_tsv_headers_put_the_extra_columns_after_zeeks(tmp_path, host):
    table, job = host
    run_session(tmp_path, "tsv", table, job)
    hdr, _ = read_log(tmp_path / "conn.log")
    zeek = load_schema("conn").names
    assert hdr.fields == zeek + CONN_EXTRA
    assert hdr.types[len(zeek):] == ("count", "string", "string", "string", "string", "string", "bool")
    hdr, _ = read_log(tmp_path / "notice.log")
    assert hdr.path == "notice" and hdr.fields == notice_schema().names


def test_blocking_without_process_table(tmp_path):
    s = SessionLog(tmp_path, "tsv", to_epoch, blocking=True)
    key = conn_key("10.0.0.5", 40000, "192.0.2.1", 443, 6)
    feed(s, process_event(process(5, b"curl"), T0))           # no table: ignored
    feed(s, blocked_event(key, T0, process(5, b"curl"), abi.BlockReason.ADDRESS, abi.BlockWhere.TC, conn_id=3))
    feed(s, tcp_syn_end(key, 3, T0, process(5, b"curl"), 0))   # the flag is missing: the event still counts
    s.close({}, "eth0", 1.0)
    hdr, records = read_log(tmp_path / "conn.log")
    assert hdr.fields == load_schema("conn").names + ("blocked",)
    (conn,) = list(records)
    assert conn["blocked"] is True
    hdr, records = read_log(tmp_path / "notice.log")
    assert hdr.fields == load_schema("notice").names
    (notice,) = list(records)
    assert notice["msg"] == "curl (pid 5) tried to connect to 192.0.2.1:443/tcp: not allowed by the policy"
    assert notice["uid"] == conn["uid"]


def test_default_session_is_unchanged(tmp_path):
    """pcap mode: no extra columns, no notice.log; blocking events are counted as bad, not guessed at."""
    s = SessionLog(tmp_path, "tsv", to_epoch)
    key = conn_key("10.0.0.5", 40000, "192.0.2.1", 53, 17)
    feed(s, process_event(process(5, b"dig"), T0))
    feed(s, udp_end(key, 3, T0, T0 + 1000, process(5, b"dig"), abi.CONN_BLOCKED))
    feed(s, blocked_event(key, T0, process(5, b"dig"), abi.BlockReason.DNS_NAME, abi.BlockWhere.TC, conn_id=3,
                          name=b"x.example"))
    stats = s.close({}, "trace.pcap", 1.0)
    hdr, records = read_log(tmp_path / "conn.log")
    assert hdr.fields == load_schema("conn").names
    assert len(list(records)) == 1
    assert not (tmp_path / "notice.log").exists()
    _, weirds = read_log(tmp_path / "weird.log")
    assert [w["name"] for w in weirds] == ["cicd_audit_bad_event"]
    assert stats["parse_errors"] == 1
    assert stats["blocked_connects"] == 0 and stats["ringbuf_drops"] == 0


def test_truncated_blocking_events_are_counted(tmp_path):
    s = SessionLog(tmp_path, "tsv", to_epoch, blocking=True)
    raw = blocked_event(conn_key("10.0.0.5", 1, "192.0.2.1", 2, 6), T0, process(5), abi.BlockReason.ADDRESS,
                        abi.BlockWhere.TC, conn_id=3)
    feed(s, raw[:-1])
    feed(s, process_event(process(5), T0)[:-4])
    bad = bytearray(raw)
    abi.BlockedEvent.from_buffer(bad).name_len = abi.NAME_MAX
    feed(s, bytes(bad))
    stats = s.close({}, "eth0", 1.0)
    assert stats["parse_errors"] == 3
    _, notices = read_log(tmp_path / "notice.log")
    assert list(notices) == []
