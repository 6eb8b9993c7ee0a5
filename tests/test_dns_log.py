"""dns.log pairing rules of main.zeek, DNS over TCP framing and flips (recorder.dns.log)."""

import struct

import dns_wire as W

from cicd_audit.recorder.logs.dns.log import FIELDS, NO_OUTPUT, DnsConnectionLog, Orientation
from cicd_audit.recorder.logs.notice_rows import AnswerNames

A = W.rr("a.example", 1, bytes([192, 0, 2, 1]), ttl=30)


def conn(orig_h="10.0.0.1", orig_p=40000, resp_h="10.0.0.53", resp_p=53, proto="udp", **kw):
    cid = Orientation(orig_h, orig_p, resp_h, resp_p)
    return DnsConnectionLog("CX", cid, proto, **kw), cid


def test_row_has_exactly_the_schema_fields():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("a.example"))
    row = log.message(cid, 1.25, False, W.reply("a.example", [A])).rows[0]
    assert tuple(row) == FIELDS
    assert row == {
        "ts": 1.0, "uid": "CX", "id.orig_h": "10.0.0.1", "id.orig_p": 40000,
        "id.resp_h": "10.0.0.53", "id.resp_p": 53, "proto": "udp", "trans_id": 0x1234,
        "rtt": 0.25, "query": "a.example", "qclass": 1, "qclass_name": "C_INTERNET", "qtype": 1,
        "qtype_name": "A", "rcode": 0, "rcode_name": "NOERROR", "AA": False, "TC": False,
        "RD": True, "RA": True, "Z": 0, "answers": ["192.0.2.1"], "TTLs": [30.0],
        "rejected": False, "opcode": 0, "opcode_name": "query"}


def test_flags_come_from_the_right_message():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("a.example", tc=True, z=2))
    row = log.message(cid, 1.1, False, W.reply("a.example", [A], aa=True, ra=True, rd=False, z=0)).rows[0]
    # RD/TC/Z from the query, AA/RA from the reply (only because it had an answer)
    assert (row["RD"], row["TC"], row["Z"], row["AA"], row["RA"]) == (True, True, 2, True, True)


def test_reply_without_answers_leaves_rtt_aa_ra_unset():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("a.example", 28))
    auth = W.rr("example", 6, W.name("ns.example") + W.name("h.example") + b"\0" * 20)
    rows = log.message(cid, 1.1, False, W.message([W.question("a.example", 28)], [], [auth], qr=True,
                                            aa=True, ra=True, rd=True)).rows
    r = rows[0]
    assert (r["rtt"], r["AA"], r["RA"], r["answers"], r["rejected"]) == (None, False, False, None, False)


def test_unanswered_query_is_logged_at_flush():
    log, cid = conn()
    assert log.message(cid, 1.0, True, W.query("a.example")).rows == ()
    rows = log.flush(cid, 20.0).rows
    assert len(rows) == 1 and rows[0]["rcode"] is None and rows[0]["ts"] == 1.0
    assert log.flush(cid, 21.0).rows == ()


def test_reply_first_then_query_pairs():
    log, cid = conn()
    assert log.message(cid, 1.0, False, W.reply("a.example", [A])).rows == ()
    row = log.message(cid, 1.2, True, W.query("a.example")).rows[0]
    assert row["ts"] == 1.0 and row["rtt"] is None and row["qtype"] == 1 and row["answers"] == ["192.0.2.1"]


def test_reply_only_row_takes_query_from_first_answer():
    log, cid = conn()
    log.message(cid, 1.0, False, W.message([], [W.rr("Only.Answer", 1, b"\1\2\3\4")], qr=True))
    row = log.flush(cid, 11.0).rows[0]
    assert row["query"] == "only.answer" and row["qtype"] is None and row["qclass_name"] is None


def test_duplicate_reply_becomes_its_own_row():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("a.example"))
    assert len(log.message(cid, 1.1, False, W.reply("a.example", [A])).rows) == 1
    assert log.message(cid, 1.2, False, W.reply("a.example", [A])).rows == ()
    rows = log.flush(cid, 12.0).rows
    assert len(rows) == 1 and rows[0]["ts"] == 1.2 and rows[0]["rtt"] is None


def test_retransmitted_queries_pair_in_order():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("a.example", id=7))
    log.message(cid, 2.0, True, W.query("a.example", id=7))
    r1 = log.message(cid, 2.5, False, W.reply("a.example", [A], id=7)).rows
    assert r1[0]["ts"] == 1.0 and r1[0]["rtt"] == 1.5
    rows = log.flush(cid, 20.0).rows
    assert len(rows) == 1 and rows[0]["ts"] == 2.0 and rows[0]["rcode"] is None


def test_interleaved_transaction_ids():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("one.example", id=1))
    log.message(cid, 1.1, True, W.query("two.example", id=2))
    log.message(cid, 1.2, True, W.query("three.example", id=3))
    assert log.message(cid, 1.3, False, W.reply("two.example", [A], id=2)).rows[0]["query"] == "two.example"
    assert log.message(cid, 1.4, False, W.reply("one.example", [A], id=1)).rows[0]["query"] == "one.example"
    assert log.message(cid, 1.5, False, W.reply("three.example", [A], id=3)).rows[0]["query"] == "three.example"
    assert log.flush(cid, 9.0).rows == ()


def test_rejected_reply_without_rrs():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("a.example", opcode=4))
    row = log.message(cid, 1.1, False, W.reply("a.example", [], opcode=4, rcode=5)).rows[0]
    assert row["rejected"] is True and row["opcode_name"] == "notify" and row["rcode_name"] == "REFUSED"


def test_error_reply_without_question_is_rejected():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("a.example"))
    row = log.message(cid, 1.1, False, W.message([], qr=True, rcode=2)).rows[0]
    assert row["rejected"] is True and row["rcode_name"] == "SERVFAIL"


def test_unknown_opcode_is_ignored_with_weird():
    log, cid = conn()
    out = log.message(cid, 1.0, True, W.header(opcode=2, qd=0))
    assert out.rows == () and out.weirds == ((1.0, "DNS_unknown_opcode", "2"),) and log.limit_reached
    assert log.flush(cid, 2.0).rows == ()


def test_bad_packets_never_raise():
    log, cid = conn()
    names = set()
    for junk in (b"", b"\x00", b"\xff" * 11, b"\xff" * 40, W.query("a.example")[:-3]):
        names |= {w[1] for w in log.message(cid, 1.0, True, junk).weirds}
    assert "DNS_truncated_len_lt_hdr_len" in names


def test_multicast_is_one_row_per_message():
    log, cid = conn(orig_p=5353, resp_h="224.0.0.251", resp_p=5353)
    q = log.message(cid, 1.0, True, W.query("printer.local", id=0, rd=False)).rows
    r = log.message(cid, 1.1, True, W.message([], [W.rr("printer.local", 1, b"\xc0\xa8\0\2", ttl=120)],
                                         id=0, qr=True, aa=True)).rows
    assert len(q) == 1 and q[0]["rcode"] is None and q[0]["query"] == "printer.local"
    assert len(r) == 1 and r[0]["rcode"] == 0 and r[0]["answers"] == ["192.168.0.2"] and r[0]["AA"]
    assert log.flips == 0            # a reply first, but to a multicast address: no flip
    assert log.flush(cid, 5.0).rows == ()


def test_reply_first_from_originator_flips_roles():
    log, cid = conn(orig_h="207.158.192.40", orig_p=53, resp_h="10.20.1.31", resp_p=53)
    out = log.message(cid, 1.0, True, W.reply("a.example", [A]))
    assert out.flipped and out.rows == () and log.flips == 1
    row = log.flush(cid.swapped(), 11.0).rows[0]
    assert row["id.orig_h"] == "10.20.1.31" and row["id.resp_h"] == "207.158.192.40"


def test_only_the_first_message_can_flip():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("a.example"))
    log.message(cid, 1.1, True, W.reply("a.example", [A]))
    assert log.flips == 0


def test_netbios_query_decoding_and_opcode_names():
    log, cid = conn(orig_p=137, resp_h="10.0.0.255", resp_p=137)
    enc = b"EMEJFHEDDADDEDEDDCDDDIDDEDDBEGDEDA"[:32].decode()
    nb = W.header(id=9, rd=True, z=1, qd=1) + bytes([32]) + enc.encode() + b"\0" + struct.pack(">HH", 32, 1)
    log.message(cid, 1.0, True, nb)
    reg = W.header(id=10, opcode=5, rd=True, qd=1) + bytes([32]) + enc.encode() + b"\0" + struct.pack(">HH", 32, 1)
    log.message(cid, 1.1, True, reg)
    rows = log.flush(cid, 20.0).rows
    assert {(r["query"], r["qtype_name"], r["opcode_name"], r["Z"]) for r in rows} == {
        ("LIWC03CC2383C1F", "NIMLOC", "netbios-query", 1),
        ("LIWC03CC2383C1F", "NIMLOC", "netbios-registration", 0)}


def test_service_is_dns_once_confirmed():
    log, cid = conn()
    assert log.service is None
    log.message(cid, 1.0, True, W.query("a.example"))
    assert log.service == "dns"
    log.message(cid, 1.1, False, W.reply("a.example", [W.rr("a.example", 35, b"\0\1\0\2")]))
    assert log.analyzer_disabled and log.service is None     # NAPTR violation after confirmation


def test_violation_disables_the_analyzer():
    log, cid = conn()
    log.message(cid, 1.0, True, W.header(qd=30) + W.question("a.example"))
    assert log.analyzer_disabled and log.limit_reached and log.service is None
    log.message(cid, 2.0, True, W.query("b.example"))
    rows = log.flush(cid, 30.0).rows
    assert [r["query"] for r in rows] == [None]


def test_pending_query_ids_limit_logs_and_forgets():
    # id 0 is the fast-path pending_query; ids 1-4 queue up; at id 5 more than
    # 3 ids are waiting, so those 4 are logged at once and forgotten.
    log, cid = conn(max_pending_query_ids=3)
    early = [log.message(cid, 1.0 + i, True, W.query("a.example", id=i)).rows for i in range(7)]
    assert [len(r) for r in early] == [0, 0, 0, 0, 0, 4, 0]
    assert sorted(r["trans_id"] for r in early[5]) == [1, 2, 3, 4]
    assert sorted(r["trans_id"] for r in log.flush(cid, 50.0).rows) == [0, 5, 6]


# ----------------------------------------------------------------- TCP
def framed(msg: bytes) -> bytes:
    return struct.pack(">H", len(msg)) + msg


def test_tcp_messages_split_and_joined_across_segments():
    log, cid = conn(proto="tcp")
    q = framed(W.query("a.example", 16))
    r = framed(W.reply("a.example", [W.rr("a.example", 16, b"\x02hi")], 16))
    log.tcp_segment(cid, 0.9, True, 1000, b"")                 # SYN anchor (isn+1)
    log.tcp_segment(cid, 0.9, False, 5000, b"")
    assert log.tcp_segment(cid, 1.0, True, 1000, q[:1]).rows == ()
    assert log.tcp_segment(cid, 1.1, True, 1001, q[1:7]).rows == ()
    assert log.tcp_segment(cid, 1.2, True, 1007, q[7:]).rows == ()
    rows = log.tcp_segment(cid, 1.5, False, 5000, r + framed(W.reply("a.example", [], 16, id=99))).rows
    assert len(rows) == 1 and rows[0]["proto"] == "tcp" and rows[0]["answers"] == ["TXT 2 hi"]
    assert rows[0]["rtt"] == 1.5 - 1.2 and rows[0]["ts"] == 1.2


def test_tcp_retransmission_and_reordering():
    log, cid = conn(proto="tcp")
    q = framed(W.query("a.example"))
    log.tcp_segment(cid, 1.0, True, 1, b"")
    log.tcp_segment(cid, 1.0, True, 1 + 10, q[10:])            # out of order: waits
    assert log.tcp_segment(cid, 1.1, True, 1, q[:12]).rows == ()   # overlaps the waiting one
    log.tcp_segment(cid, 1.2, True, 1, q[:12])                 # pure retransmission
    rows = log.flush(cid, 9.0).rows
    assert len(rows) == 1 and rows[0]["query"] == "a.example" and rows[0]["ts"] == 1.1
    assert log.messages == 1


def test_tcp_sequence_wraparound():
    log, cid = conn(proto="tcp")
    q = framed(W.query("a.example"))
    start = 0xFFFFFFF8
    log.tcp_segment(cid, 1.0, True, start, q[:5])
    log.tcp_segment(cid, 1.1, True, (start + 5) & 0xFFFFFFFF, q[5:])
    assert [r["query"] for r in log.flush(cid, 5.0).rows] == ["a.example"]


def test_tcp_partial_message_parsed_at_close():
    log, cid = conn(proto="tcp")
    log.tcp_segment(cid, 1.0, True, 1, framed(W.query("a.example"))[:-2])
    out = log.tcp_closed(cid, 2.0)
    assert any(w[1] == "DNS_truncated_quest_too_short" for w in out.weirds)
    rows = log.flush(cid, 3.0).rows
    assert len(rows) == 1 and rows[0]["qtype"] is None


# ------------------------------------------------- the result of each call
def test_a_flip_mid_call_swaps_the_rows_written_after_it():
    # One TCP segment from the originator: a reply (the first message: the roles flip), then
    # the query it answers; the pair is written in the same call, in the swapped orientation.
    log, cid = conn(orig_h="192.0.2.53", orig_p=53, resp_h="10.0.0.7", resp_p=53, proto="tcp")
    log.tcp_segment(cid, 0.9, True, 100, b"")
    segment = framed(W.reply("a.example", [A], id=5)) + framed(W.query("a.example", id=5))
    out = log.tcp_segment(cid, 1.0, True, 100, segment)
    assert out.flipped and log.flips == 1
    assert [(r["id.orig_h"], r["id.resp_h"], r["answers"]) for r in out.rows] == [
        ("10.0.0.7", "192.0.2.53", ["192.0.2.1"])]
    # The caller swaps its own state; nothing of the old orientation stays behind.
    later = log.tcp_segment(cid.swapped(), 2.0, False, 100 + len(segment), framed(W.query("b.example", id=6)))
    assert not later.flipped and later.rows == ()
    row = log.flush(cid.swapped(), 9.0).rows[0]
    assert (row["query"], row["id.orig_h"], row["id.resp_h"]) == ("b.example", "10.0.0.7", "192.0.2.53")


def test_rows_take_the_orientation_of_the_call_that_writes_them():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("a.example"))
    other = Orientation("10.0.0.9", 5000, "10.0.0.53", 53)
    assert log.flush(other, 5.0).rows[0]["id.orig_h"] == "10.0.0.9"


def test_weirds_come_back_once_from_the_call_that_raised_them():
    log, cid = conn()
    first = log.message(cid, 1.0, True, b"\x00" * 5)
    assert first.weirds == ((1.0, "DNS_truncated_len_lt_hdr_len", ""),) and first.rows == ()
    second = log.message(cid, 2.0, True, W.query("a.example"))
    assert second is NO_OUTPUT and second.weirds == ()
    assert log.flush(cid, 9.0).weirds == ()


def test_a_call_with_nothing_to_say_returns_the_shared_empty_output():
    log, cid = conn()
    assert log.message(cid, 1.0, True, W.query("a.example")) is NO_OUTPUT
    assert NO_OUTPUT == ((), (), (), False)


def test_resolved_addresses_come_from_the_address_records():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("www.example"))
    mapped = bytes(10) + b"\xff\xff" + bytes([198, 51, 100, 7])
    compat = bytes(12) + bytes([1, 2, 3, 4])                 # Zeek writes ::1.2.3.4, events.address_text ::102:304
    answers = [W.rr("www.example", 5, W.name("edge.example")),               # CNAME chain
               W.rr("edge.example", 5, W.name("203.0.113.5")),               # a name that reads like an address
               W.rr("203.0.113.5", 1, bytes([192, 0, 2, 1])),
               W.rr("203.0.113.5", 28, mapped),
               W.rr("203.0.113.5", 28, compat),
               W.rr("203.0.113.5", 16, b"\x0a192.0.2.99")]                  # TXT that reads like an address
    out = log.message(cid, 1.1, False, W.reply("www.example", answers))
    assert out.rows[0]["answers"] == ["edge.example", "203.0.113.5", "192.0.2.1", "198.51.100.7", "::1.2.3.4",
                                      "TXT 10 192.0.2.99"]
    assert out.resolved == (("www.example", ("192.0.2.1", "198.51.100.7", "::102:304")),)


def test_rows_without_address_answers_resolve_nothing():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("a.example", 16))
    out = log.message(cid, 1.1, False, W.reply("a.example", [W.rr("a.example", 16, b"\x09192.0.2.1")], 16))
    assert len(out.rows) == 1 and out.resolved == ()


def test_a_dynamic_update_resolves_nothing():
    zone = W.question("example", 6)
    add = W.rr("h.example", 1, bytes([192, 0, 2, 8]))
    log, cid = conn()
    log.message(cid, 1.0, True, W.message([zone], [], [add], opcode=5))
    out = log.message(cid, 1.1, False, W.message([zone], [], [add], opcode=5, qr=True))
    assert out.rows[0]["answers"] == ["add: A h.example 192.0.2.8"] and out.resolved == ()


def test_answer_names_takes_the_resolved_pairs():
    log, cid = conn()
    log.message(cid, 1.0, True, W.query("cdn.example"))
    out = log.message(cid, 1.1, False, W.reply("cdn.example", [W.rr("cdn.example", 5, W.name("192.0.2.7")),
                                                              W.rr("192.0.2.7", 1, bytes([192, 0, 2, 7]))]))
    names = AnswerNames()
    for query, addresses in out.resolved:
        names.remember(query, addresses)
    names.remember(None, ("192.0.2.7",))          # a row without a query names nothing
    assert names.names_for("192.0.2.7") == ["cdn.example"]
    assert names.names_for("192.0.2.8") == []
