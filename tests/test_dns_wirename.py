"""The compiled DNS name, question and RR header reader (_wirename.c) walks exactly as the Python walk does.

Whole messages are interpreted twice, with the C reader and without it, and
must give the same message: questions, records, weirds, errors, limits. The
inputs are the UDP DNS payloads of ../shared's tunnel captures and Zeek
traces (up to 400 of each), messages built to sit on the reader's edges (pointers, pointer
chains at the depth limit, names of 254-256 bytes, upper case, NetBIOS's long
labels), and random mutations and cuts of all of these.
"""

import dataclasses
import random
from pathlib import Path

import dns_pcap_harness as H
import pytest
from dns_wire import message, question, rr
from scapy.layers.inet import UDP
from scapy.utils import PcapReader
from shared_data import shared

from cicd_audit import compiled
from cicd_audit.recorder.logs.dns import message as dns_message
from cicd_audit.recorder.logs.dns.log import DnsConnectionLog, Orientation
from cicd_audit.recorder.logs.dns.wire import DnsParseError, ParseOptions

READERS = ("_read_name", "_read_question", "_read_rr_header", "_read_plain_message")


def with_readers(compiled_reader: bool, run):
    """run() with the C readers in use, or with every one of them off (the pure-Python walk)."""
    saved = {name: getattr(dns_message, name) for name in READERS}
    if not compiled_reader:
        for name in READERS:
            setattr(dns_message, name, None)
    try:
        return run()
    finally:
        for name, reader in saved.items():
            setattr(dns_message, name, reader)


def walked(data: bytes, compiled_reader: bool, **kwargs):
    """interpret() with or without the C reader, as plain data (errors by their fields)."""
    try:
        msg = with_readers(compiled_reader, lambda: dns_message.interpret(data, **kwargs))
    except DnsParseError as exc:
        return ("refused", exc.reason, exc.weird, exc.offset, exc.addl)
    error = msg.error
    plain = dataclasses.asdict(dataclasses.replace(msg, error=None))
    return plain, error and (error.reason, error.weird, error.offset, error.addl)


def same_walk(data: bytes, **kwargs) -> None:
    assert walked(data, True, **kwargs) == walked(data, False, **kwargs), data.hex()


def captured_payloads() -> list:
    roots = [shared("dns-tunnel-data", "pcaps"), shared("zeek-oracle")]
    payloads = []
    for pcap in sorted(p for root in roots for p in root.rglob("*.pcap*")):
        per_file = 0
        with PcapReader(str(pcap)) as reader:
            for packet in reader:
                if UDP in packet and 53 in (packet[UDP].sport, packet[UDP].dport):
                    payloads.append(bytes(packet[UDP].payload))
                    per_file += 1
                    if per_file == 400:
                        break
    return payloads


def edge_messages() -> list:
    labels = [b"a", b"Mixed", b"x" * 63, b"\xff\xfe", b"under_score", b"dot.in"]
    out = []
    for parts in ([b"Example", b"COM"], [b"x" * 63] * 3 + [b"y" * 61], [b"x" * 63] * 3 + [b"y" * 62],
                  [b"x" * 63] * 4, [b"z" * 40] * 6, []):
        wire = b"".join(bytes([len(p)]) + p for p in parts) + b"\0"
        out.append(message([wire + b"\0\x01\0\x01"]))
    # A question, then answers whose owners point at it and into each other.
    q = question("Www.Example.COM")
    out.append(message([q], [rr(b"\xc0\x0c", 1, b"\x01\x02\x03\x04"), rr(b"\x03cdn\xc0\x10", 5, b"\x02ab\xc0\x0c")],
                       qr=True))
    # A second question reaching into the first: Zeek lower-cases what a pointer reaches, even in a
    # question's original name.
    out.append(message([question("Www.Example.COM"), b"\x03Sub\xc0\x10\0\x01\0\x01"]))
    # Chains of pointers around the depth limit (20): the chain sits in an unknown RR's RDATA, each
    # pointer pointing at the one before it and the first at the question's name; the next RR's owner
    # points at the chain's last pointer.
    for depth in (1, 18, 19, 20, 21, 25):
        head = message([question("end")], qr=True, an=2)
        rdata_at = len(head) + 2 + 10
        chain = b"".join(b"\xc0" + bytes([12 if k == 0 else rdata_at + 2 * (k - 1)]) for k in range(depth))
        last = rdata_at + 2 * (depth - 1)
        out.append(head + rr(b"\xc0\x0c", 999, chain) + rr(b"\xc0" + bytes([last]), 1, b"\x01\x02\x03\x04"))
    # Forward and self pointers, a pointer cut in half, a label past the end.
    out.append(message([b"\xc0\x0c\0\x01\0\x01"]))
    out.append(message([b"\xc0\x20\0\x01\0\x01"]))
    out.append(message([b"\xc0"]))
    out.append(message([b"\x05ab"]))
    for label in labels:
        out.append(message([bytes([len(label)]) + label + b"\0\0\x01\0\x01"]))
    out += plain_edges()
    # NetBIOS: a 32-byte name, and a label longer than 63 that only port 137 accepts.
    out.append(message([b"\x20" + b"EB" * 16 + b"\0\0\x20\0\x01"]))
    out.append(message([b"\x50" + b"A" * 80 + b"\0\0\x20\0\x01"]))
    return out


def plain_edges() -> list:
    """Messages on the edges of the whole-message reader: the answers it reads, and one step past each."""
    q = question("Www.Example.COM")
    at_q = b"\xc0\x0c"
    v4_mapped = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])
    answer_sets = [
        [rr(at_q, 1, b"\x01\x02\x03\x04")],
        [rr(at_q, 28, bytes(range(16))), rr(at_q, 28, v4_mapped), rr("Other.\xc3\xa9.Name", 1, b"\x7f\0\0\x01")],
        [rr(at_q, 5, b"\x03cdn\xc0\x10"), rr(b"\x03cdn\xc0\x10", 1, b"\x0a\0\0\x01")],
        [rr(at_q, 12, b"\x04Host\0"), rr(at_q, 2, b"\x02ns\xc0\x10")],
        [rr(at_q, 1, b"\x01\x02\x03\x04\x05")],          # A of 5 bytes: DNS_RR_bad_length
        [rr(at_q, 28, b"\x01\x02\x03\x04")],              # AAAA of 4: Zeek reads 16 all the same
        [rr(at_q, 5, b"\x03cdn\xc0\x10\0")],              # a byte after the target: DNS_RR_length_mismatch
        [rr(at_q, 1, b"")],                                 # zero RDLENGTH
        [rr(at_q, 15, b"\0\x0a\x02mx\xc0\x10")],         # MX: the walk's
        [rr(at_q, 1, b"\x01\x02\x03\x04"), rr(at_q, 46, b"\0" * 18)],
    ]
    out = [message([q], answers, qr=True, rd=True, ra=True) for answers in answer_sets]
    out.append(message([q], answer_sets[0], qr=True, rcode=3))
    out.append(message([q], qr=True, rcode=2))                       # dns_rejected
    out.append(message([q], answer_sets[0], [rr(at_q, 2, b"\x02ns\0")], qr=True))   # authority, skipped by default
    out.append(message([q, question("second")], answer_sets[0], qr=True))
    out.append(message([q], answer_sets[0], qr=True, opcode=4))
    out.append(message([q], answer_sets[0] * 2, qr=True, an=3))      # one answer fewer than counted
    return out


def mutations(seed: bytes, rng: random.Random, count: int) -> list:
    out = []
    for _ in range(count):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            if len(data) <= 12:
                break
            i = rng.randrange(12, len(data))
            data[i] = rng.choice([0, 1, 63, 64, 0xC0, 0xC1, 0xFF, rng.randrange(256), data[i] ^ 0x20])
        if rng.random() < 0.3:
            data = data[:rng.randrange(12, len(data) + 1)]
        out.append(bytes(data))
    return out


def test_the_compiled_reader_is_the_one_in_use_here():
    readers = [getattr(dns_message, name) for name in READERS]
    assert None not in readers, compiled.unavailable()


@pytest.fixture(scope="module")
def corpus():
    return captured_payloads() + edge_messages()


def test_the_edges_reach_the_python_walks_refusals():
    weirds = {w for data in edge_messages() for w, _ in dns_message.interpret(data).weirds}
    assert {"DNS_max_compression_chain_depth_exceeded", "DNS_NAME_too_long", "DNS_label_forward_compress_offset",
            "DNS_label_len_gt_pkt", "DNS_label_too_long"} <= weirds, weirds


def test_captured_and_edge_messages_walk_alike(corpus):
    assert len(corpus) > 1000
    for data in corpus:
        same_walk(data)
        same_walk(data, resp_port=137, is_netbios=True)


def test_most_captured_messages_are_read_whole_in_c(corpus):
    """The whole-message reader is the common path, so the comparisons above are mostly about it."""
    whole = sum(dns_message._read_plain_message(data, 512, 20) is not None for data in corpus)
    assert whole > len(corpus) // 3, (whole, len(corpus))
    assert [dns_message._read_plain_message(data, 512, 20) is not None for data in plain_edges()] == \
        [True] * 4 + [False] * 6 + [True] * 3 + [False] * 3


def test_the_whole_message_reader_alone():
    data = message([question("A.B")], [rr(b"\xc0\x0c", 1, b"\x01\x02\x03\x04", ttl=0xFFFFFFFF)], qr=True, id=7, rd=True)
    header, question_read, answers = dns_message._read_plain_message(data, 512, 20)
    assert header == (7, True, 0, False, False, True, False, 0, False, False, 0, 1, 1, 0, 0)
    assert question_read == ("a.b", "A.B", 1, 1)
    assert answers == (("a.b", 1, 1, 0xFFFFFFFF, 4, "1.2.3.4"),)
    assert dns_message._read_plain_message(data, 512, 0) is None     # the answer's pointer is past depth 0


def test_mutated_messages_walk_alike(corpus):
    rng = random.Random(1035)
    for seed in rng.sample(corpus, 400) + edge_messages():
        for data in mutations(seed, rng, 25):
            same_walk(data)


def test_a_lower_depth_limit_and_every_section_walked():
    options = ParseOptions(max_compression_depth=2, skip_all_auth=False, skip_all_addl=False)
    rng = random.Random(20)
    for seed in edge_messages():
        for data in [seed] + mutations(seed, rng, 50):
            same_walk(data, options=options)


def test_the_reader_alone_returns_the_cursor_zeek_would_leave():
    data = message([question("A.b")], [rr(b"\xc0\x0c", 1, b"\x01\x02\x03\x04")], qr=True)
    assert dns_message._read_name(data, 12, len(data) - 12, 512, False, 0, 20) == (b"A.b", 17, len(data) - 17)
    assert dns_message._read_name(data, 21, len(data) - 21, 512, True, 0, 20) == (b"a.b", 23, len(data) - 23)
    assert dns_message._read_name(data, 21, len(data) - 21, 512, True, 0, 0) is None    # depth 1 > 0: Python's
    assert dns_message._read_name(data, 12, 3, 512, True, 0, 20) is None                 # the label passes `left`
    assert dns_message._read_name(data, 12, len(data) - 12, 3, True, 0, 20) is None      # and the buffer


def test_a_question_alone():
    data = message([question("A.b", qtype=28, qclass=0x8001)])
    assert dns_message._read_question(data, 12, len(data) - 12, 512, 20) == (b"A.b", 21, 0, 28, 0x8001)
    assert dns_message._read_question(data[:-1], 12, len(data) - 13, 512, 20) is None    # 3 bytes after the name


def test_an_rr_header_alone():
    data = message([], [rr("Host.Example", 1, b"\x01\x02\x03\x04", ttl=0xFFFFFFFF, rclass=0x8001)], qr=True)
    end = len(data)
    assert dns_message._read_rr_header(data, 12, end - 12, 512, 20) == \
        (b"host.example", end - 4, 4, 1, 0x8001, 0xFFFFFFFF, 4)
    assert dns_message._read_rr_header(data[:-5], 12, end - 17, 512, 20) is None    # 9 bytes after the name


def test_a_source_tree_edit_without_a_rebuild_is_noticed(tmp_path, monkeypatch):
    monkeypatch.setattr(compiled, "_unavailable", {})
    edited = tmp_path / "_wirename.c"
    edited.write_bytes(Path(dns_message.__file__).with_name("_wirename.c").read_bytes() + b"\n")
    assert compiled.load("cicd_audit.recorder.logs.dns._wirename", edited) is None
    assert "pip install --editable . rebuilds it" in compiled.notice()


# -- the log: a plain message's events raised from the C reader's tuple (log.py, _plain_events) --------
CLASSIC_PCAP = (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")


class KeepingHarness(H.Harness):
    """The oracle tests' harness, keeping every DnsOutput whole (resolved addresses and flips too)."""

    def __init__(self, validate_checksums: bool):
        super().__init__(validate_checksums)
        self.outputs = []

    def _take(self, c, out):
        self.outputs.append(out)
        super()._take(c, out)


def logged(pcap: Path, compiled_reader: bool) -> list:
    def run():
        h = KeepingHarness(validate_checksums=False)
        for ts, linktype, frame in H.read_pcap(str(pcap)):
            p = H.decode(ts, linktype, frame)
            if p is not None:
                h.packet(p)
        h.finish()
        return h.outputs
    return with_readers(compiled_reader, run)


def test_captured_traffic_is_logged_alike_with_and_without_the_c_reader():
    """Every row, weird, resolved address and flip of ../shared's DNS traces and tunnel captures."""
    pcaps = sorted(shared("zeek-oracle").glob("*/trace.pcap")) + sorted(
        shared("dns-tunnel-data", "pcaps").rglob("*.pcap"))
    pcaps = [p for p in pcaps if p.read_bytes()[:4] in CLASSIC_PCAP]     # what the harness reads
    rows = 0
    for pcap in pcaps:
        outputs = logged(pcap, True)
        assert repr(outputs) == repr(logged(pcap, False)), pcap         # repr: a TTL of 30 is not one of 30.0
        rows += sum(len(out.rows) for out in outputs)
    assert rows > 1000


def test_edge_replies_are_logged_alike_with_and_without_the_c_reader():
    """Each edge message as the reply to a query of its id, then the connection's end."""
    cid = Orientation("10.0.0.1", 40000, "10.0.0.2", 53)
    replies = plain_edges() + [message([question("Www.Example.COM")], qr=True, ar=1),   # no RR read: not rejected
                               message([question("a.b")], [rr(b"\xc0\x0c", 5, b"\0")], qr=True)]   # root target

    def run(reply: bytes):
        query = message([question("www.example.com")], id=int.from_bytes(reply[:2], "big"), rd=True)
        log = DnsConnectionLog("C1", cid, "udp")
        return [log.message(cid, 1.0, True, query), log.message(cid, 1.25, False, reply), log.flush(cid, 9.0),
                log.service]

    for reply in replies:
        assert repr(with_readers(True, lambda: run(reply))) == repr(with_readers(False, lambda: run(reply))), \
            reply.hex()
