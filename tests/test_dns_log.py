"""dns.log pairing rules of main.zeek, DNS over TCP framing and flips (recorder.dns.log)."""

import struct
from types import SimpleNamespace

import dns_wire as W

from cicd_audit.recorder.logs.dns.log import FIELDS, DnsConnectionLog  # noqa: E402

A = W.rr("a.example", 1, bytes([192, 0, 2, 1]), ttl=30)


def conn(orig_h="10.0.0.1", orig_p=40000, resp_h="10.0.0.53", resp_p=53, proto="udp", **kw):
    cid = SimpleNamespace(orig_h=orig_h, orig_p=orig_p, resp_h=resp_h, resp_p=resp_p)
    return DnsConnectionLog("CX", cid, proto, **kw), cid


def test_row_has_exactly_the_schema_fields():
    log, _ = conn()
    log.message(1.0, True, W.query("a.example"))
    row = log.message(1.25, False, W.reply("a.example", [A]))[0]
    assert tuple(row) == FIELDS
    assert row == {
        "ts": 1.0, "uid": "CX", "id.orig_h": "10.0.0.1", "id.orig_p": 40000,
        "id.resp_h": "10.0.0.53", "id.resp_p": 53, "proto": "udp", "trans_id": 0x1234,
        "rtt": 0.25, "query": "a.example", "qclass": 1, "qclass_name": "C_INTERNET", "qtype": 1,
        "qtype_name": "A", "rcode": 0, "rcode_name": "NOERROR", "AA": False, "TC": False,
        "RD": True, "RA": True, "Z": 0, "answers": ["192.0.2.1"], "TTLs": [30.0],
        "rejected": False, "opcode": 0, "opcode_name": "query"}


def test_flags_come_from_the_right_message():
    log, _ = conn()
    log.message(1.0, True, W.query("a.example", tc=True, z=2))
    row = log.message(1.1, False, W.reply("a.example", [A], aa=True, ra=True, rd=False, z=0))[0]
    # RD/TC/Z from the query, AA/RA from the reply (only because it had an answer)
    assert (row["RD"], row["TC"], row["Z"], row["AA"], row["RA"]) == (True, True, 2, True, True)


def test_reply_without_answers_leaves_rtt_aa_ra_unset():
    log, _ = conn()
    log.message(1.0, True, W.query("a.example", 28))
    auth = W.rr("example", 6, W.name("ns.example") + W.name("h.example") + b"\0" * 20)
    rows = log.message(1.1, False, W.message([W.question("a.example", 28)], [], [auth], qr=True,
                                            aa=True, ra=True, rd=True))
    r = rows[0]
    assert (r["rtt"], r["AA"], r["RA"], r["answers"], r["rejected"]) == (None, False, False, None, False)


def test_unanswered_query_is_logged_at_flush():
    log, _ = conn()
    assert log.message(1.0, True, W.query("a.example")) == []
    rows = log.flush(20.0)
    assert len(rows) == 1 and rows[0]["rcode"] is None and rows[0]["ts"] == 1.0
    assert log.flush(21.0) == []


def test_reply_first_then_query_pairs():
    log, _ = conn()
    assert log.message(1.0, False, W.reply("a.example", [A])) == []
    row = log.message(1.2, True, W.query("a.example"))[0]
    assert row["ts"] == 1.0 and row["rtt"] is None and row["qtype"] == 1 and row["answers"] == ["192.0.2.1"]


def test_reply_only_row_takes_query_from_first_answer():
    log, _ = conn()
    log.message(1.0, False, W.message([], [W.rr("Only.Answer", 1, b"\1\2\3\4")], qr=True))
    row = log.flush(11.0)[0]
    assert row["query"] == "only.answer" and row["qtype"] is None and row["qclass_name"] is None


def test_duplicate_reply_becomes_its_own_row():
    log, _ = conn()
    log.message(1.0, True, W.query("a.example"))
    assert len(log.message(1.1, False, W.reply("a.example", [A]))) == 1
    assert log.message(1.2, False, W.reply("a.example", [A])) == []
    rows = log.flush(12.0)
    assert len(rows) == 1 and rows[0]["ts"] == 1.2 and rows[0]["rtt"] is None


def test_retransmitted_queries_pair_in_order():
    log, _ = conn()
    log.message(1.0, True, W.query("a.example", id=7))
    log.message(2.0, True, W.query("a.example", id=7))
    r1 = log.message(2.5, False, W.reply("a.example", [A], id=7))
    assert r1[0]["ts"] == 1.0 and r1[0]["rtt"] == 1.5
    rows = log.flush(20.0)
    assert len(rows) == 1 and rows[0]["ts"] == 2.0 and rows[0]["rcode"] is None


def test_interleaved_transaction_ids():
    log, _ = conn()
    log.message(1.0, True, W.query("one.example", id=1))
    log.message(1.1, True, W.query("two.example", id=2))
    log.message(1.2, True, W.query("three.example", id=3))
    assert log.message(1.3, False, W.reply("two.example", [A], id=2))[0]["query"] == "two.example"
    assert log.message(1.4, False, W.reply("one.example", [A], id=1))[0]["query"] == "one.example"
    assert log.message(1.5, False, W.reply("three.example", [A], id=3))[0]["query"] == "three.example"
    assert log.flush(9.0) == []


def test_rejected_reply_without_rrs():
    log, _ = conn()
    log.message(1.0, True, W.query("a.example", opcode=4))
    row = log.message(1.1, False, W.reply("a.example", [], opcode=4, rcode=5))[0]
    assert row["rejected"] is True and row["opcode_name"] == "notify" and row["rcode_name"] == "REFUSED"


def test_error_reply_without_question_is_rejected():
    log, _ = conn()
    log.message(1.0, True, W.query("a.example"))
    row = log.message(1.1, False, W.message([], qr=True, rcode=2))[0]
    assert row["rejected"] is True and row["rcode_name"] == "SERVFAIL"


def test_unknown_opcode_is_ignored_with_weird():
    log, _ = conn()
    assert log.message(1.0, True, W.header(opcode=2, qd=0)) == []
    assert log.weirds == [(1.0, "DNS_unknown_opcode", "2")] and log.limit_reached
    assert log.flush(2.0) == []


def test_bad_packets_never_raise():
    log, _ = conn()
    for junk in (b"", b"\x00", b"\xff" * 11, b"\xff" * 40, W.query("a.example")[:-3]):
        log.message(1.0, True, junk)
    names = {w[1] for w in log.weirds}
    assert "DNS_truncated_len_lt_hdr_len" in names


def test_multicast_is_one_row_per_message():
    log, _ = conn(orig_p=5353, resp_h="224.0.0.251", resp_p=5353)
    q = log.message(1.0, True, W.query("printer.local", id=0, rd=False))
    r = log.message(1.1, True, W.message([], [W.rr("printer.local", 1, b"\xc0\xa8\0\2", ttl=120)],
                                         id=0, qr=True, aa=True))
    assert len(q) == 1 and q[0]["rcode"] is None and q[0]["query"] == "printer.local"
    assert len(r) == 1 and r[0]["rcode"] == 0 and r[0]["answers"] == ["192.168.0.2"] and r[0]["AA"]
    assert log.flips == 0            # a reply first, but to a multicast address: no flip
    assert log.flush(5.0) == []


def test_reply_first_from_originator_flips_roles():
    flipped = []
    log, cid = conn(orig_h="207.158.192.40", orig_p=53, resp_h="10.20.1.31", resp_p=53)

    def on_flip():
        flipped.append(True)
        cid.orig_h, cid.resp_h = cid.resp_h, cid.orig_h
        cid.orig_p, cid.resp_p = cid.resp_p, cid.orig_p

    log.on_flip = on_flip
    assert log.message(1.0, True, W.reply("a.example", [A])) == []
    assert flipped == [True] and log.flips == 1
    row = log.flush(11.0)[0]
    assert row["id.orig_h"] == "10.20.1.31" and row["id.resp_h"] == "207.158.192.40"


def test_only_the_first_message_can_flip():
    log, _ = conn()
    log.message(1.0, True, W.query("a.example"))
    log.message(1.1, True, W.reply("a.example", [A]))
    assert log.flips == 0


def test_netbios_query_decoding_and_opcode_names():
    log, _ = conn(orig_p=137, resp_h="10.0.0.255", resp_p=137)
    enc = b"EMEJFHEDDADDEDEDDCDDDIDDEDDBEGDEDA"[:32].decode()
    nb = W.header(id=9, rd=True, z=1, qd=1) + bytes([32]) + enc.encode() + b"\0" + struct.pack(">HH", 32, 1)
    log.message(1.0, True, nb)
    reg = W.header(id=10, opcode=5, rd=True, qd=1) + bytes([32]) + enc.encode() + b"\0" + struct.pack(">HH", 32, 1)
    log.message(1.1, True, reg)
    rows = log.flush(20.0)
    assert {(r["query"], r["qtype_name"], r["opcode_name"], r["Z"]) for r in rows} == {
        ("LIWC03CC2383C1F", "NIMLOC", "netbios-query", 1),
        ("LIWC03CC2383C1F", "NIMLOC", "netbios-registration", 0)}


def test_service_is_dns_once_confirmed():
    log, _ = conn()
    assert log.service is None
    log.message(1.0, True, W.query("a.example"))
    assert log.service == "dns"
    log.message(1.1, False, W.reply("a.example", [W.rr("a.example", 35, b"\0\1\0\2")]))
    assert log.analyzer_disabled and log.service is None     # NAPTR violation after confirmation


def test_violation_disables_the_analyzer():
    log, _ = conn()
    log.message(1.0, True, W.header(qd=30) + W.question("a.example"))
    assert log.analyzer_disabled and log.limit_reached and log.service is None
    log.message(2.0, True, W.query("b.example"))
    rows = log.flush(30.0)
    assert [r["query"] for r in rows] == [None]


def test_pending_query_ids_limit_logs_and_forgets():
    # id 0 is the fast-path pending_query; ids 1-4 queue up; at id 5 more than
    # 3 ids are waiting, so those 4 are logged at once and forgotten.
    log, _ = conn(max_pending_query_ids=3)
    early = [log.message(1.0 + i, True, W.query("a.example", id=i)) for i in range(7)]
    assert [len(r) for r in early] == [0, 0, 0, 0, 0, 4, 0]
    assert sorted(r["trans_id"] for r in early[5]) == [1, 2, 3, 4]
    assert sorted(r["trans_id"] for r in log.flush(50.0)) == [0, 5, 6]


# ----------------------------------------------------------------- TCP
def framed(msg: bytes) -> bytes:
    return struct.pack(">H", len(msg)) + msg


def test_tcp_messages_split_and_joined_across_segments():
    log, _ = conn(proto="tcp")
    q = framed(W.query("a.example", 16))
    r = framed(W.reply("a.example", [W.rr("a.example", 16, b"\x02hi")], 16))
    log.tcp_segment(0.9, True, 1000, b"")                 # SYN anchor (isn+1)
    log.tcp_segment(0.9, False, 5000, b"")
    assert log.tcp_segment(1.0, True, 1000, q[:1]) == []
    assert log.tcp_segment(1.1, True, 1001, q[1:7]) == []
    assert log.tcp_segment(1.2, True, 1007, q[7:]) == []
    rows = log.tcp_segment(1.5, False, 5000, r + framed(W.reply("a.example", [], 16, id=99)))
    assert len(rows) == 1 and rows[0]["proto"] == "tcp" and rows[0]["answers"] == ["TXT 2 hi"]
    assert rows[0]["rtt"] == 1.5 - 1.2 and rows[0]["ts"] == 1.2


def test_tcp_retransmission_and_reordering():
    log, _ = conn(proto="tcp")
    q = framed(W.query("a.example"))
    log.tcp_segment(1.0, True, 1, b"")
    log.tcp_segment(1.0, True, 1 + 10, q[10:])            # out of order: waits
    assert log.tcp_segment(1.1, True, 1, q[:12]) == []   # overlaps the waiting one
    log.tcp_segment(1.2, True, 1, q[:12])                 # pure retransmission
    rows = log.flush(9.0)
    assert len(rows) == 1 and rows[0]["query"] == "a.example" and rows[0]["ts"] == 1.1
    assert log.messages == 1


def test_tcp_sequence_wraparound():
    log, _ = conn(proto="tcp")
    q = framed(W.query("a.example"))
    start = 0xFFFFFFF8
    log.tcp_segment(1.0, True, start, q[:5])
    log.tcp_segment(1.1, True, (start + 5) & 0xFFFFFFFF, q[5:])
    assert [r["query"] for r in log.flush(5.0)] == ["a.example"]


def test_tcp_partial_message_parsed_at_close():
    log, _ = conn(proto="tcp")
    log.tcp_segment(1.0, True, 1, framed(W.query("a.example"))[:-2])
    log.tcp_closed(2.0)
    assert any(w[1] == "DNS_truncated_quest_too_short" for w in log.weirds)
    rows = log.flush(3.0)
    assert len(rows) == 1 and rows[0]["qtype"] is None
