"""A UDP lookup's query and reply logged without the connection's analyzer (dns/plain_pair.py).

PlainPair must give what DnsConnectionLog gives for the same messages: the
same row (every column, the TTLs' type included: compared by repr), the same
resolved addresses; and where it declines a message, the DnsConnectionLog its
``handover`` builds must go on exactly as one that had every message from the
start. Checked message by message on built sequences (every edge reply of the
whole-message reader, every way a connection leaves the one-lookup shape,
Zeek's settings that change what is logged), then log by log on recordings of
../shared's DNS traces, tunnel captures and a capture of those sequences.
"""

from __future__ import annotations

import ctypes
import itertools
from pathlib import Path

import pytest
from dns_wire import message, query, question, reply, rr
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap
from shared_data import shared
from test_dns_wirename import plain_edges

from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.logs import uid as uid_module
from cicd_audit.recorder.logs.dns.log import NO_OUTPUT, DnsConnectionLog, Orientation
from cicd_audit.recorder.logs.dns.plain_pair import PlainPair
from cicd_audit.recorder.logs.dns.wire import BASE_HANDLED_EVENTS, ParseOptions
from cicd_audit.recorder.logs.session import SessionLog

CONN = Orientation("10.0.0.1", 40000, "10.0.0.2", 53)
A = rr(b"\xc0\x0c", 1, b"\x01\x02\x03\x04")


def through_log(messages, options):
    """Each message's output, then the end's, the service and the limit flag: DnsConnectionLog alone."""
    log = DnsConnectionLog("C1", messages[0][0], "udp", options=options)
    outputs = [log.message(*m) for m in messages]
    return outputs + [log.flush(messages[-1][0], 99.0), log.service, log.limit_reached]


def through_pair(messages, options):
    """The same as the session feeds it: a pair while it takes the messages, then its handover."""
    first = messages[0]
    log = PlainPair.start("C1", *first, options)
    taken = log is not None
    outputs = [NO_OUTPUT] if taken else []
    if not taken:
        log = DnsConnectionLog("C1", first[0], "udp", options=options)
        outputs.append(log.message(*first))
    for conn, ts, is_orig, payload in messages[1:]:
        if type(log) is PlainPair:
            out = log.message(conn, ts, is_orig, payload) if conn == first[0] else None   # roles kept
            if out is not None:
                outputs.append(out)
                continue
            log = log.handover()
        outputs.append(log.message(conn, ts, is_orig, payload))
    return outputs + [log.flush(messages[-1][0], 99.0), log.service, log.limit_reached], taken


def exchange(*payloads, conn=CONN, ts=1.0, step=0.25):
    """Messages alternating from the originator and the responder, ``step`` seconds apart."""
    return [(conn, ts + i * step, i % 2 == 0, p) for i, p in enumerate(payloads)]


def q(id=0x1234, **flags):
    return query("www.example.com", id=id, **flags)


def sequences():
    """(name, messages, options): the one-lookup shape, every step past it, Zeek's settings."""
    plain = ParseOptions()
    seqs = [(f"edge reply {i}", exchange(q(int.from_bytes(r[:2], "big")), r), plain)
            for i, r in enumerate(plain_edges())]
    ok = reply("www.example.com", [A])
    other = reply("www.example.com", [A], id=0x9999)
    seqs += [
        ("query alone", exchange(q()), plain),
        ("reply twice", exchange(q(), ok, ok), plain),
        ("two lookups on one port", exchange(q(), ok, q(0x2222), reply("www.example.com", [A], id=0x2222)), plain),
        ("reply to another id", exchange(q(), other), plain),
        ("a second query", exchange(q(), q(0x2222)), plain),
        ("the same query again", exchange(q(), q()), plain),
        ("a reply first", exchange(ok), plain),
        ("a reply, then its query", exchange(ok, q()), plain),
        ("two questions", exchange(message([question("a.example"), question("b.example")], id=0x1234), ok), plain),
        ("reply and query at one time", exchange(q(), ok, step=0.0), plain),
        ("query flags", exchange(q(tc=True, z=5, rd=False), reply("www.example.com", [A], aa=True, ra=False)), plain),
        ("no answer, rejected", exchange(q(), reply("www.example.com", rcode=3)), plain),
        ("no answer, an authority", exchange(q(), reply("www.example.com", rcode=3, ns=1) + A), plain),
        ("no answer, an additional", exchange(q(), reply("www.example.com", ar=1) + A), plain),
        ("a walked reply (MX)", exchange(q(), reply("www.example.com", [rr(b"\xc0\x0c", 15, b"\0\x0a\x02mx\0")])),
         plain),
        ("NOTIFY", exchange(q(opcode=4), reply("www.example.com", [A], opcode=4)), plain),
        ("a walked query (ANY class)", exchange(message([question("x.example", 1, 255)], id=0x1234), ok), plain),
        ("multicast", exchange(q(), ok, conn=Orientation("10.0.0.1", 5353, "224.0.0.251", 5353)), plain),
        ("IPv6 multicast", exchange(q(), ok, conn=Orientation("fe80::1", 5353, "ff02::fb", 5353)), plain),
        ("NetBIOS", exchange(q(), ok, conn=Orientation("10.0.0.1", 137, "10.0.0.255", 137)), plain),
        ("NetBIOS responder", exchange(q(), ok, conn=Orientation("10.0.0.1", 40000, "10.0.0.2", 137)), plain),
        ("A unhandled", exchange(q(), ok), ParseOptions(handled_events=BASE_HANDLED_EVENTS - {"dns_A_reply"})),
        ("authority walked", exchange(q(), ok), ParseOptions(skip_all_auth=False)),
        ("additional walked", exchange(q(), ok), ParseOptions(skip_all_addl=False)),
    ]
    swapped = [(CONN, 1.0, True, q()), (CONN.swapped(), 1.25, True, ok)]
    seqs.append(("the roles changed", swapped, plain))
    # Lookups one after another from the same port, then each way out of that shape.
    lookups = [p for i in range(3) for p in (q(0x100 + i), reply("www.example.com", [A], id=0x100 + i))]
    after = {
        "lookups": [],
        "lookups, a query pending": [q(0x2222)],
        "lookups, a stray reply": [ok],
        "lookups, a reply to the last again": [reply("www.example.com", [A], id=0x102)],
        "lookups, two queries at once": [q(0x2222), q(0x3333), reply("www.example.com", [A], id=0x3333)],
        "lookups, a walked query": [message([question("x.example", 1, 255)], id=0x4444)],
        "lookups, a walked reply": [q(0x5555), reply("www.example.com", [rr(b"\xc0\x0c", 15, b"\0\x0a\x02mx\0")],
                                                     id=0x5555)],
        "lookups, a NOTIFY": [q(0x6666, opcode=4)],
        "lookups, a lookup, a stray reply": [q(0x7777), reply("www.example.com", [A], id=0x7777), other],
    }
    seqs += [(name, exchange(*lookups, *rest), plain) for name, rest in after.items()]
    from_orig = exchange(*lookups) + [(CONN, 9.0, True, ok)]     # a reply from the originator: no flip now
    seqs.append(("lookups, a reply from the originator", from_orig, plain))
    # Past DPD's 10 KiB a protocol violation (more questions than dns_max_queries) no longer removes the
    # analyzer, so the lookup after it is logged; before, it is not. The lookups' bytes count.
    many = [rr(b"\xc0\x0c", 1, bytes([10, 0, 0, k])) for k in range(10)]
    for count in (10, 60):
        big = [p for i in range(count) for p in (q(i), reply("www.example.com", many, id=i))]
        violation = message([question(f"x{k}.example") for k in range(26)], id=0x9000)
        seqs.append((f"{count} big lookups, a violation, a lookup",
                     exchange(*big, violation, q(0x9001), reply("www.example.com", [A], id=0x9001)), plain))
    seqs.append(("lookups, a message shorter than a header", exchange(*lookups, b"\x12\x34\x01"), plain))
    return seqs


@pytest.mark.parametrize("name, messages, options", sequences(), ids=[s[0] for s in sequences()])
def test_the_pair_logs_what_the_connections_log_does(name, messages, options):
    expected = through_log(messages, options)
    got, _ = through_pair(messages, options)
    assert repr(got) == repr(expected)          # repr: a TTL of 30 is not one of 30.0


def test_the_pair_takes_the_one_lookup_shape_and_nothing_else():
    taken = {name for name, messages, options in sequences() if through_pair(messages, options)[1]}
    assert {"edge reply 0", "query alone", "reply twice", "reply to another id", "A unhandled",
            "two lookups on one port", "lookups", "lookups, a query pending"} <= taken
    assert not taken & {"a reply first", "two questions", "NOTIFY", "multicast", "IPv6 multicast", "NetBIOS",
                        "NetBIOS responder", "authority walked",
                        "additional walked"}
    # The pair itself writes the row only for a plain reply to its query; the rest are handed over.
    pair = PlainPair.start("C1", CONN, 1.0, True, q(), ParseOptions())
    assert pair.message(CONN, 1.5, False, reply("www.example.com", [A], id=0x9999)) is None
    assert pair.message(CONN, 1.5, False, reply("www.example.com", [A])).rows[0]["answers"] == ["1.2.3.4"]
    assert pair.message(CONN, 1.6, False, reply("www.example.com", [A])) is None        # answered already
    assert pair.message(CONN, 1.7, True, q(0x2222)) is NO_OUTPUT                       # the next lookup
    assert pair.message(CONN, 1.8, True, q(0x3333)) is None                            # a second at once


# -- whole recordings: every log alike with the pair on and off ----------------------------------------
def edge_capture(path: Path) -> None:
    """The built sequences as a capture (default settings only), each on a connection of its own."""
    frames = []
    ts = 1_700_000_000.0
    for port, (_name, messages, options) in enumerate(sequences(), 20000):
        if options != ParseOptions():
            continue
        for conn, _ts, is_orig, payload in messages:
            o_port = conn.orig_p if conn.orig_p != 40000 else port
            src, sport, dst, dport = (conn.orig_h, o_port, conn.resp_h, conn.resp_p) if is_orig else \
                (conn.resp_h, conn.resp_p, conn.orig_h, o_port)
            if ":" in src:
                continue                    # the IPv6 sequence is left to the message-level test
            frame = Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload)
            frame.time = ts
            frames.append(frame)
            ts += 0.01
        ts += 1.0
    wrpcap(str(path), frames)


def recordings(tmp_path_factory):
    edge = tmp_path_factory.mktemp("pair") / "edges.pcap"
    edge_capture(edge)
    oracle = shared("zeek-oracle")
    cases = [d for d in sorted(oracle.iterdir()) if d.name.startswith(("dns-", "udp-")) or d.name == "wikipedia"]
    out = [(edge, True)]
    for case in cases:
        flags = (case / "meta.json").read_text()
        out.append((case / "trace.pcap", '"-C"' not in flags))
    out += [(p, False) for p in sorted(shared("dns-tunnel-data", "pcaps").rglob("*.pcap"))]
    return out


def kernel_events(pcap: Path, validate_checksums: bool, into: Path) -> list:
    """Every ring-buffer record the kernel program gives for the capture (record --pcap's own code)."""
    from cicd_audit.recorder.drivers import pcap_replay

    records = []
    handle = SessionLog.on_event

    def keep(self, data, size):
        records.append(ctypes.string_at(data, size) if isinstance(data, int) else bytes(data[:size]))
        handle(self, data, size)

    SessionLog.on_event = keep
    try:
        pcap_replay.record_pcap(pcap, into, validate_checksums=validate_checksums, progress=False)
    finally:
        SessionLog.on_event = handle
    return records


def logs_of(records: list, out: Path, plain_pairs: bool, monkeypatch) -> dict:
    """The records through a fresh session; its logs without their open and close lines. Uids are
    numbered in the order they are handed out, the same for both ways."""
    counter = itertools.count(1)
    monkeypatch.setattr(uid_module, "uid_digits", lambda random_bytes, at: str(next(counter)))
    monkeypatch.setattr(SessionLog, "plain_pairs", plain_pairs)
    session = SessionLog(out, "tsv", to_epoch=lambda ns: ns / 1e9)
    for record in records:
        session.on_event(record, len(record))
    stats = session.close({}, "test", 0.0)
    logs = {p.name: [line for line in p.read_text().splitlines() if not line.startswith(("#open", "#close"))]
            for p in sorted(out.glob("*.log")) if p.name != "capture_stats.log"}
    return {"logs": logs, "dns_rows": stats["dns_rows"], "dns_messages": stats["dns_messages"]}


def test_recordings_log_alike_with_the_pair_and_without(tmp_path, tmp_path_factory, monkeypatch):
    paired_rows = 0
    for i, (pcap, validate) in enumerate(recordings(tmp_path_factory)):
        records = kernel_events(pcap, validate, tmp_path / f"rec{i}")
        with_pair = logs_of(records, tmp_path / f"on{i}", True, monkeypatch)
        without = logs_of(records, tmp_path / f"off{i}", False, monkeypatch)
        assert with_pair == without, pcap
        paired_rows += with_pair["dns_rows"]
    assert paired_rows > 1000


def test_a_session_takes_most_lookups_as_pairs(tmp_path, monkeypatch):
    """Lookups (one query, one reply; 40 each from a port of its own, then 10 one after another from
    one port) never build the connection's analyzer: the shape the pair is for is the shape it takes."""
    pcap = tmp_path / "lookups.pcap"
    frames = []
    for i in range(50):
        name = f"host{i}.example.com"
        port = 30000 + min(i, 40)
        for is_query, ts in ((True, i), (False, i + 0.001)):
            payload = query(name, id=i) if is_query else reply(name, [A], id=i)
            src, dst = ("10.0.0.1", "10.0.0.53") if is_query else ("10.0.0.53", "10.0.0.1")
            sport, dport = (port, 53) if is_query else (53, port)
            frame = Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload)
            frame.time = 1_700_000_000 + ts
            frames.append(frame)
    wrpcap(str(pcap), frames)
    records = kernel_events(pcap, True, tmp_path / "rec")
    built = []
    monkeypatch.setattr(DnsConnectionLog, "__init__", _counting(DnsConnectionLog.__init__, built))
    result = logs_of(records, tmp_path / "on", True, monkeypatch)
    assert result["dns_rows"] == 50 and built == []
    assert logs_of(records, tmp_path / "off", False, monkeypatch) == result
    assert len(built) == 41


def _counting(init, calls: list):
    def counted(self, *args, **kwargs):
        calls.append(args[0])
        init(self, *args, **kwargs)
    return counted



def test_a_change_of_roles_hands_the_pair_over(tmp_path, monkeypatch):
    """The kernel's roles change between the query and the reply (here to a responder in
    DNS::multicast_subnets, whose messages are rows of their own): the connection's log takes over."""
    from test_session_blocking import conn_key, dns_event, udp_end

    key = conn_key("224.0.0.251", 5353, "10.0.0.2", 53, 17)
    query_event = dns_event(key, 1_000_000_000, 7, 1, q())
    reply_event = bytearray(dns_event(key, 1_250_000_000, 7, 1, reply("www.example.com", [A])))
    reply_event[abi.DnsEvent.orig_slot.offset] = 1      # the originator is slot 1 from now on
    records = [query_event, bytes(reply_event), udp_end(key, 7, 1_000_000_000, 1_250_000_000, abi.Process())]
    with_pair = logs_of(records, tmp_path / "on", True, monkeypatch)
    assert with_pair == logs_of(records, tmp_path / "off", False, monkeypatch)
    assert with_pair["dns_rows"] == 2       # the reply's row at once, the query's at the end
