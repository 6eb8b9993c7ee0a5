"""The ``answers``/``TTLs`` text Zeek writes for each RR type (recorder.dns.render via DnsConnectionLog)."""

import struct

import dns_wire as W
import pytest

from cicd_audit.recorder.logs.dns.log import DnsConnectionLog, Orientation
from cicd_audit.recorder.logs.dns.message import wire_bytes


def answers_for(*rrs, qtype=1, opcode=0, resp_p=53):
    """Send a query then a reply carrying ``rrs``; return the single logged row."""
    cid = Orientation("10.0.0.1", 40000, "10.0.0.53", resp_p)
    log = DnsConnectionLog("C1", cid, "udp")
    assert log.message(cid, 1.0, True, W.query("Host.Example.com", qtype, opcode=opcode)).rows == ()
    rows = log.message(cid, 1.5, False, W.reply("host.example.com", rrs, qtype, opcode=opcode)).rows
    rows += log.flush(cid, 2.0).rows
    assert len(rows) == 1
    return rows[0]


def one(rdata_type, rdata, **kw):
    row = answers_for(W.rr("Host.Example.COM", rdata_type, rdata, ttl=3600), **kw)
    return row["answers"], row["TTLs"], row["rtt"]


def test_a():
    assert one(1, bytes([192, 0, 2, 1])) == (["192.0.2.1"], [3600.0], 0.5)


def test_aaaa():
    import ipaddress
    assert one(28, ipaddress.IPv6Address("2001:db8::1").packed)[0] == ["2001:db8::1"]
    assert one(28, ipaddress.IPv6Address("::ffff:192.0.2.1").packed)[0] == ["192.0.2.1"]


def test_a6_is_read_as_a_16_byte_address():
    import ipaddress
    assert one(38, ipaddress.IPv6Address("2001:db8::2").packed)[0] == ["2001:db8::2"]


def test_name_types_show_the_target_lowercased():
    assert one(5, W.name("Alias.Example.NET"))[0] == ["alias.example.net"]   # CNAME
    assert one(2, W.name("ns1.example.com"))[0] == ["ns1.example.com"]       # NS
    assert one(12, W.name("ptr.example.com"))[0] == ["ptr.example.com"]      # PTR


def test_mx_shows_only_the_exchange():
    assert one(15, struct.pack(">H", 10) + W.name("mail.example.com"))[0] == ["mail.example.com"]


def test_soa_shows_mname():
    rdata = W.name("ns.example.com") + W.name("hostmaster.example.com") + struct.pack(">5I", 1, 2, 3, 4, 5)
    assert one(6, rdata)[0] == ["ns.example.com"]


def test_txt_strings_with_lengths():
    assert one(16, b"\x05hello\x00\x03a b")[0] == ["TXT 5 hello TXT 0  TXT 3 a b"]


def test_txt_bytes_round_trip_exactly():
    ans = one(16, b"\x03\x00\xff\t" + b"\x02\xc3\xa9")[0]
    # lengths are byte lengths; valid UTF-8 reads as text, other bytes survive as surrogates
    assert ans == ["TXT 3 \x00\udcff\t TXT 2 \u00e9"]
    assert wire_bytes(ans[0]) == b"TXT 3 \x00\xff\t TXT 2 \xc3\xa9"


def test_non_ascii_names_keep_their_bytes():
    row = answers_for(W.rr("host.example.com", 5, b"\x05caf\xc3\xa9\x02\xff\x41\x00"))
    assert [wire_bytes(a) for a in row["answers"]] == [b"caf\xc3\xa9.\xffa"]


def test_spf():
    assert one(99, b"\x0ev=spf1 mx -all")[0] == ["SPF 14 v=spf1 mx -all"]


def test_srv_shows_only_the_target():
    assert one(33, struct.pack(">HHH", 0, 5, 5060) + W.name("sip.example.com"))[0] == ["sip.example.com"]


def test_naptr():
    rd = struct.pack(">HH", 100, 10) + b"\x01s\x08SIPS+D2T\x00" + W.name("_sips._tcp.example.com")
    assert one(35, rd)[0] == ["NAPTR 100 10 s SIPS+D2T _sips._tcp.example.com"]
    rd = struct.pack(">HH", 1, 2) + b"\x01u\x07E2U+sip\x10!^.*$!sip:a@b.c!\x00"
    assert one(35, rd)[0] == ["NAPTR 1 2 u E2U+sip !^.*$!sip:a@b.c!"]
    rd = struct.pack(">HH", 1, 2) + b"\x00\x00\x00\x00"
    assert one(35, rd)[0] == ["NAPTR 1 2   "]      # Zeek keeps the separators of empty fields


def test_rrsig():
    rd = struct.pack(">HBBIIIH", 1, 8, 2, 300, 2, 1, 1234) + W.name("Example.com") + b"\xaa" * 8
    assert one(46, rd)[0] == ["RRSIG 1 example.com"]
    rd = struct.pack(">HBBIIIH", 48, 8, 0, 300, 2, 1, 1234) + W.name(".") + b"\xaa" * 8
    assert one(46, rd)[0] == ["RRSIG 48 <Root>"]


def test_dnskey():
    assert one(48, struct.pack(">HBB", 257, 3, 13) + b"\x01" * 32)[0] == ["DNSKEY 13"]


def test_nsec_shows_owner_and_next():
    rd = W.name("b.example.com") + b"\x00\x06\x40\x01\x00\x00\x00\x03"
    assert one(47, rd)[0] == ["NSEC host.example.com b.example.com"]


def test_nsec3_and_nsec3param():
    rd = struct.pack(">BBH", 1, 0, 10) + b"\x02\xab\xcd" + b"\x04" + b"\x11" * 4 + b"\x00\x01\x40"
    assert one(50, rd)[0] == ["NSEC3"]
    assert one(51, struct.pack(">BBH", 1, 0, 10) + b"\x00")[0] == ["NSEC3PARAM"]


def test_ds():
    assert one(43, struct.pack(">HBB", 2371, 5, 2) + b"\x00" * 32, qtype=43)[0] == ["DS 5 2"]


def test_binds():
    assert one(65534, b"\x08\x12\x34\x00\x01")[0] == ["BIND9 signing signal"]


def test_sshfp_hex_lowercase():
    assert one(44, b"\x01\x02" + bytes.fromhex("ABCDEF0123"))[0] == ["SSHFP: abcdef0123"]


def test_loc_two_spaces():
    rd = bytes([0, 0x12, 0x15, 0x13]) + struct.pack(">III", 1, 2, 3)
    assert one(29, rd, qtype=255)[0] == ["LOC:  18 21 19"]


def test_unknown_type():
    assert one(39, W.name("b.example.com"))[0] == ["<unknown type=39>"]     # DNAME
    assert one(256, b"\x00\x01\x00\x01http://x")[0] == ["<unknown type=256>"]  # URI


@pytest.mark.parametrize("rtype, rdata", [
    (13, b"\x03CPU\x02OS"),                          # HINFO: no handler in main.zeek
    (257, b"\x00\x05issueca.example"),               # CAA: no handler
    (64, struct.pack(">H", 1) + W.name(".") + struct.pack(">HHH", 3, 2, 443)),   # SVCB
    (65, struct.pack(">H", 1) + W.name(".") + struct.pack(">HH", 1, 3) + b"\x02h2"),  # HTTPS
    (32, b"\x00\x00\x0a\x00\x00\x01"),               # NB
])
def test_types_that_add_nothing(rtype, rdata):
    answers, ttls, rtt = one(rtype, rdata)
    assert answers is None and ttls is None and rtt is None


def test_wks_sets_rtt_but_adds_no_answer():
    answers, ttls, rtt = one(11, bytes([192, 0, 2, 1, 6, 0x40]))
    assert answers is None and ttls is None and rtt == 0.5


def test_several_answers_in_order_with_ttls():
    row = answers_for(W.rr("host.example.com", 5, W.name("cdn.example.net"), ttl=60),
                      W.rr("cdn.example.net", 1, bytes([203, 0, 113, 7]), ttl=20))
    assert row["answers"] == ["cdn.example.net", "203.0.113.7"]
    assert row["TTLs"] == [60.0, 20.0]


def test_srv_on_netbios_port_is_nbstat_and_not_rendered():
    rd = struct.pack(">HHH", 0, 0, 0) + W.name("x")
    row = answers_for(W.rr("host.example.com", 33, rd), qtype=33, resp_p=137)
    assert row["qtype_name"] == "NBSTAT" and row["answers"] is None
