"""Offline dissection of raw DNS messages, well-formed and malformed (recorder.dns.message)."""

import struct

import dns_wire as W
import pytest

from cicd_audit.recorder.logs.dns.message import (  # noqa: E402
    DnsParseError,
    ParseOptions,
    decode_netbios_name,
    interpret,
    parse_message,
    zeek_addr_str,
)

pytestmark = pytest.mark.filterwarnings("ignore")


def test_header_fields():
    m = parse_message(W.header(id=0xBEEF, qr=True, opcode=0, aa=True, tc=True, rd=True, ra=True,
                               z=7, rcode=3))
    h = m.header
    assert (h.id, h.qr, h.opcode, h.aa, h.tc, h.rd, h.ra, h.z, h.ad, h.cd, h.rcode) == \
        (0xBEEF, True, 0, True, True, True, True, 7, True, True, 3)


def test_question_is_lowercased_and_keeps_original():
    m = parse_message(W.query("WwW.ExAmple.COM", 28))
    q = m.questions[0]
    assert (q.name, q.original_name, q.qtype, q.qclass, q.event) == \
        ("www.example.com", "WwW.ExAmple.COM", 28, 1, "dns_request")


def test_root_question_is_empty_string():
    assert parse_message(W.query(".", 2)).questions[0].name == ""


def test_reply_question_events():
    assert parse_message(W.reply("a.com")).questions[0].event == "dns_rejected"
    m = parse_message(W.reply("a.com", [W.rr("a.com", 1, bytes([1, 2, 3, 4]))]))
    assert m.questions[0].event == "dns_query_reply"


def test_compressed_answer_name():
    msg = W.reply("Example.COM", [W.rr(b"\xc0\x0c", 1, bytes([10, 0, 0, 1]))])
    rr = parse_message(msg).answers[0]
    assert rr.name == "example.com" and rr.rdata["address"] == "10.0.0.1"


def test_pointer_into_middle_of_name():
    # "www.example.com" at 12; "mail" + pointer to "example.com" at 16.
    msg = W.reply("www.example.com", [W.rr(b"\x04mail\xc0\x10", 5, b"\xc0\x0c")])
    rr = parse_message(msg).answers[0]
    assert rr.name == "mail.example.com" and rr.rdata["target"] == "www.example.com"


def test_compression_loop_is_rejected():
    # A pointer to itself: Zeek only follows strictly backward pointers.
    msg = W.header(qd=1) + b"\xc0\x0c" + struct.pack(">HH", 1, 1)
    with pytest.raises(DnsParseError) as e:
        parse_message(msg)
    assert e.value.weird == "DNS_label_forward_compress_offset"


def test_two_pointer_loop_is_rejected():
    # Question name at 12 points to 14, which points back to 12.
    msg = W.header(qd=1) + b"\xc0\x0e\xc0\x0c" + struct.pack(">HH", 1, 1)
    with pytest.raises(DnsParseError) as e:
        parse_message(msg)
    assert e.value.weird == "DNS_label_forward_compress_offset"


def test_long_backward_pointer_chain_is_cut_at_depth_limit():
    # A skipped RR (type 65280) whose RDATA holds "a" then 30 pointers, each to
    # the one before; a CNAME then points at the last one (depth 31 > 20).
    start = 12 + len(W.name("x")) + 10
    chain = bytearray(W.name("a"))
    prev = start
    for _ in range(30):
        here = start + len(chain)
        chain += struct.pack(">H", 0xC000 | prev)
        prev = here
    holder = W.rr("x", 65280, bytes(chain))
    cname = W.rr("x", 5, struct.pack(">H", 0xC000 | prev))
    m = interpret(W.header(qr=True, an=2) + holder + cname)
    assert ("DNS_max_compression_chain_depth_exceeded", "21") in m.weirds
    assert m.limit_reached and m.error is None
    assert m.answers[1].rdata["target"] == ""     # Zeek keeps what it had: nothing


def test_label_too_long():
    msg = W.header(qd=1) + bytes([64]) + b"a" * 64 + b"\0" + struct.pack(">HH", 1, 1)
    with pytest.raises(DnsParseError) as e:
        parse_message(msg)
    assert e.value.weird == "DNS_label_too_long"


def test_long_labels_allowed_on_netbios_port():
    msg = W.header(qd=1) + bytes([64]) + b"a" * 64 + b"\0" + struct.pack(">HH", 32, 1)
    assert parse_message(msg, resp_port=137).questions[0].name == "a" * 64


def test_label_past_end():
    msg = W.header(qd=1) + b"\x10abc"
    with pytest.raises(DnsParseError) as e:
        parse_message(msg)
    assert e.value.weird == "DNS_label_len_gt_pkt"


def test_name_longer_than_zeek_buffer():
    labels = b"".join(bytes([63]) + b"x" * 63 for _ in range(9))   # 576 bytes
    msg = W.header(qd=1) + labels + b"\0" + struct.pack(">HH", 1, 1)
    with pytest.raises(DnsParseError) as e:
        parse_message(msg)
    assert e.value.weird == "DNS_label_len_gt_name_len"


def test_name_without_terminator():
    msg = W.header(qd=1) + b"\x03abc"
    with pytest.raises(DnsParseError) as e:
        parse_message(msg)
    assert e.value.weird == "dns_invalid_name"


def test_header_too_short():
    with pytest.raises(DnsParseError) as e:
        parse_message(b"\x00\x01\x00")
    assert e.value.weird == "DNS_truncated_len_lt_hdr_len" and e.value.partial is None


def test_unknown_opcode():
    with pytest.raises(DnsParseError) as e:
        parse_message(W.header(opcode=2))
    assert e.value.weird == "DNS_unknown_opcode" and e.value.addl == "2"
    # ... but NetBIOS accepts any opcode
    assert parse_message(W.header(opcode=6), is_netbios=True).header.opcode == 6


def test_question_too_short():
    msg = W.header(qd=1) + W.name("a.com") + b"\x00\x01"
    with pytest.raises(DnsParseError) as e:
        parse_message(msg)
    assert e.value.weird == "DNS_truncated_quest_too_short"


def test_counts_larger_than_data():
    msg = W.reply("a.com", [W.rr("a.com", 1, bytes([1, 2, 3, 4]))], an=3)
    with pytest.raises(DnsParseError) as e:
        parse_message(msg)
    assert e.value.weird == "dns_invalid_name"
    assert len(e.value.partial.answers) == 1     # Zeek still reports the first RR


def test_rdlength_past_end():
    msg = W.reply("a.com", [W.rr("a.com", 1, bytes([1, 2, 3, 4]))])[:-2]
    with pytest.raises(DnsParseError) as e:
        parse_message(msg)
    assert e.value.weird == "DNS_truncated_RR_rdlength_lt_len"


def test_rr_header_too_short():
    msg = W.message([W.question("a.com")], qr=True, an=1) + W.name("a.com") + b"\x00\x01"
    with pytest.raises(DnsParseError) as e:
        parse_message(msg)
    assert e.value.weird == "DNS_truncated_ans_too_short"


def test_zero_rdlength_stops_unless_last():
    a = W.rr("a.com", 1, bytes([1, 2, 3, 4]))
    empty_txt = W.rr("a.com", 16, b"")
    with pytest.raises(DnsParseError) as e:
        parse_message(W.reply("a.com", [empty_txt, a]))
    assert e.value.weird == "DNS_zero_rdlength"
    m = parse_message(W.reply("a.com", [a, empty_txt]))        # last RR: accepted
    assert m.answers[1].rdata["strings"] == []


def test_a_with_bad_length():
    with pytest.raises(DnsParseError) as e:
        parse_message(W.reply("a.com", [W.rr("a.com", 1, b"\x01\x02\x03\x04\x05")]))
    assert e.value.weird == "DNS_RR_bad_length"


def test_txt_string_past_rdlength_still_raises_event():
    m = interpret(W.reply("a.com", [W.rr("a.com", 16, b"\x02ok\x09bad")]))
    rr = m.answers[0]
    assert rr.event == "dns_TXT_reply" and rr.rdata["strings"] == ["ok"]
    assert ("DNS_TXT_char_str_past_rdlen", "") in m.weirds and m.error is not None


def test_loc_wrong_length():
    with pytest.raises(DnsParseError) as e:
        parse_message(W.reply("a.com", [W.rr("a.com", 29, b"\0" * 15)]))
    assert e.value.weird == "dns_invalid_loc_length"


def test_naptr_too_short_is_a_violation():
    m = interpret(W.reply("a.com", [W.rr("a.com", 35, b"\x00\x01\x00\x02")]))
    assert m.violation == "DNS_NAPTR_too_short" and m.error is not None


def test_unknown_type_is_skipped_with_weird():
    dname = W.rr("a.com", 39, W.name("b.com"))
    a = W.rr("a.com", 1, bytes([1, 1, 1, 1]))
    m = parse_message(W.reply("a.com", [dname, a]))
    assert [r.event for r in m.answers] == ["dns_unknown_reply", "dns_A_reply"]
    assert ("DNS_RR_unknown_type", "39") in m.weirds


def test_wks_leaves_cursor_on_rdata():
    # Zeek raises dns_WKS_reply but does not consume the RDATA: the next RR is
    # read from inside it.
    wks = W.rr("a.com", 11, b"\x00" + b"\x01\x02\x03\x04")
    m = interpret(W.reply("a.com", [wks, W.rr("a.com", 1, bytes([9, 9, 9, 9]))]))
    assert m.answers[0].event == "dns_WKS_reply"
    assert m.error is not None


def test_aaaa_reads_16_bytes_whatever_rdlength():
    # A 4-byte AAAA followed by an A: Zeek reads 16 bytes and loses the A's alignment.
    m = interpret(W.reply("a.com", [W.rr("a.com", 28, b"\x20\x01\x0d\xb8"),
                                    W.rr("a.com", 1, bytes([1, 2, 3, 4]))]))
    assert m.answers[0].rdata["address"].startswith("2001:db8:")


def test_skipped_sections_by_default():
    auth = W.rr("a.com", 2, W.name("ns.a.com"))
    m = parse_message(W.message([W.question("a.com")], [W.rr("a.com", 1, b"\1\2\3\4")], [auth],
                                qr=True))
    assert m.authority == [] and m.additional == [] and m.ended


def test_additional_parsed_when_enabled():
    opt = W.rr(".", 41, struct.pack(">HH", 10, 8) + b"\x01" * 8, ttl=0x00008000, rclass=1232)
    m = parse_message(W.message([W.question("a.com")], additional=[opt], qr=True),
                      options=ParseOptions(skip_all_addl=False))
    rr = m.additional[0]
    assert rr.rdata["payload_size"] == 1232 and rr.rdata["z"] == 0x8000
    assert rr.rdata["options"] == [(10, b"\x01" * 8)]


def test_edns_truncated_option():
    opt = W.rr(".", 41, struct.pack(">HH", 10, 9) + b"\x01" * 8, rclass=1232)
    with pytest.raises(DnsParseError) as e:
        parse_message(W.message(additional=[opt], qr=True), options=ParseOptions(skip_all_addl=False))
    assert e.value.weird == "EDNS_truncated_option"


def test_too_many_questions():
    m = interpret(W.header(qd=26) + W.question("a.com"))
    assert m.violation == "DNS_Conn_count_too_large" and m.limit_reached and m.ended
    assert ("DNS_Conn_count_too_large", "26 > 25") in m.weirds
    assert m.questions == []


def test_dynamic_update_sections():
    zone = W.question("Example.org", 6)
    pre = W.rr("h.example.org", 5, b"", ttl=0, rclass=254)            # NoRRSet CNAME
    delete = W.rr("h.example.org", 28, b"", ttl=0, rclass=255)        # delete RRset AAAA
    add = W.rr("h.example.org", 1, bytes([10, 0, 0, 1]), ttl=1200)
    m = parse_message(W.message([zone], [pre], [delete, add], opcode=5, qr=True))
    assert m.zone == ("example.org", 6, 1)
    assert [(r.section, r.event) for r in m.answers] == [
        ("prerequisite", "dns_dynamic_update_pre"), ("update", "dns_dynamic_update_del"),
        ("update", "dns_A_reply")]


def test_dynamic_update_zone_must_be_soa():
    m = interpret(W.message([W.question("example.org", 1)], opcode=5))
    assert ("DNS_DU_incorrect_zone_type", "") in m.weirds and not m.ended


def test_fuzz_never_raises_anything_else():
    import random
    rnd = random.Random(1)
    base = W.reply("www.example.com", [W.rr(b"\xc0\x0c", 5, W.name("x.example.com")),
                                       W.rr(b"\xc0\x0c", 1, bytes([1, 2, 3, 4]))])
    for _ in range(3000):
        b = bytearray(base)
        for _ in range(rnd.randint(1, 6)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        b = bytes(b[:rnd.randint(0, len(b))])
        for netbios in (False, True):
            try:
                interpret(b, is_netbios=netbios, resp_port=137 if netbios else 53,
                          options=ParseOptions(skip_all_auth=False, skip_all_addl=False))
            except DnsParseError:
                pass


@pytest.mark.parametrize("encoded, decoded", [
    ("FEEIEFCAEOEFFEECEJEPFDCAEOEBENEF", "THE NETBIOS NAM"),
    ("fhepfcelehfcepfffacacacacacacabn", "WORKGROUP"),      # lower case decodes too
    ("EMEJFHEDDADDEDEDDCDDDIDDEDDBEGDE", "LIWC03CC2383C1F"),   # 16th byte dropped
    ("CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "*"),
    ("ABCD", ""),
    ("ZZAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ""),
])
def test_decode_netbios_name(encoded, decoded):
    assert decode_netbios_name(encoded) == decoded


@pytest.mark.parametrize("addr, text", [
    ("2001:db8::1", "2001:db8::1"),
    ("::ffff:1.2.3.4", "1.2.3.4"),           # v4-mapped is IPv4 to Zeek
    ("::1.2.3.4", "::1.2.3.4"),               # BSD inet_ntop keeps the dotted tail
    ("::ffff:0:1.2.3.4", "::ffff:0:1.2.3.4"),
    ("::1", "::1"),
    ("::", "::"),
    ("1:0:1:0:0:1:0:0", "1:0:1::1:0:0"),
    ("1:0:0:1:0:0:1:1", "1::1:0:0:1:1"),      # first of two equal runs
    ("fe80::200:deff:fead:beef", "fe80::200:deff:fead:beef"),
    ("1:2:3:4:5:6:7:0", "1:2:3:4:5:6:7:0"),
])
def test_zeek_addr_str(addr, text):
    import ipaddress
    assert zeek_addr_str(ipaddress.IPv6Address(addr).packed) == text


def test_scapy_built_message_dissects():
    scapy = pytest.importorskip("scapy.layers.dns")
    pkt = scapy.DNS(id=7, qr=1, rd=1, ra=1, qd=scapy.DNSQR(qname="zeek.org", qtype="A"),
                    an=scapy.DNSRR(rrname="zeek.org", type="A", ttl=60, rdata="192.0.78.150"))
    m = parse_message(bytes(pkt))
    assert m.header.id == 7 and m.answers[0].rdata["address"] == "192.0.78.150"
    assert m.answers[0].ttl == 60


def test_ascii_lower_is_c_locale_tolower_on_the_range_only():
    from cicd_audit.recorder.logs.dns.wire import ascii_lower

    every_byte = bytes(range(256))
    buf = bytearray(b"KEEP" + every_byte + b"KEEP")
    ascii_lower(buf, 4, 4 + 256)
    expected = bytes(b + 32 if 0x41 <= b <= 0x5A else b for b in every_byte)
    assert buf == b"KEEP" + expected + b"KEEP"
