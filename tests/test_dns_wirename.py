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

import pytest
from dns_wire import message, question, rr
from scapy.layers.inet import UDP
from scapy.utils import PcapReader
from shared_data import shared

from cicd_audit import compiled
from cicd_audit.recorder.logs.dns import message as dns_message
from cicd_audit.recorder.logs.dns.wire import DnsParseError, ParseOptions


def walked(data: bytes, compiled_reader: bool, **kwargs):
    """interpret() with or without the C reader, as plain data (errors by their fields)."""
    saved = dns_message._read_name, dns_message._read_question, dns_message._read_rr_header
    if not compiled_reader:
        dns_message._read_name = dns_message._read_question = dns_message._read_rr_header = None
    try:
        msg = dns_message.interpret(data, **kwargs)
    except DnsParseError as exc:
        return ("refused", exc.reason, exc.weird, exc.offset, exc.addl)
    finally:
        dns_message._read_name, dns_message._read_question, dns_message._read_rr_header = saved
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
    # NetBIOS: a 32-byte name, and a label longer than 63 that only port 137 accepts.
    out.append(message([b"\x20" + b"EB" * 16 + b"\0\0\x20\0\x01"]))
    out.append(message([b"\x50" + b"A" * 80 + b"\0\0\x20\0\x01"]))
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
    readers = (dns_message._read_name, dns_message._read_question, dns_message._read_rr_header)
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
