"""Blocking mode's DNS name check (ca_hash_qname and ca_name_allowed) in the kernel.

Each query goes through the blocking program's egress entry with
BPF_PROG_TEST_RUN: an allowed name passes (TC_ACT_UNSPEC, -1), a refused one
is answered NXDOMAIN on the spot (TC_ACT_REDIRECT, 7). The names probe what
the branch-free hash must keep: case folding, every chunk length around
CA_HASH_CHUNK (8), names longer than the hashed span (128 bytes), and a '.'
inside a label, which must never pass for a separator. Nothing is attached.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct

import pytest
from scapy.all import IP, UDP, Ether, Raw

from cicd_audit.policy import parse_policy
from cicd_audit.recorder.attach.job_scope import JobScope
from cicd_audit.recorder.kernel import packet_runner as tr
from cicd_audit.recorder.kernel.block_tables import PolicyTables
from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings

pytestmark = [pytest.mark.root]

RESOLVER = "10.0.0.53"
PASSED, ANSWERED_NXDOMAIN = 0xFFFFFFFF, 7
POLICY = """allowed:
  domains:
    - pypi.org
    - abcd.org
    - abcdefghijkl.org
    - "*.pythonhosted.org"
"""


@pytest.fixture(scope="module")
def egress_fd():
    program = CaptureProgram(ProgramSettings(attribution=True, block=True), lambda data, size: None)
    try:
        PolicyTables.build(parse_policy(POLICY), resolvers=[ipaddress.ip_address(RESOLVER)]).fill(program.maps, 1)
        JobScope.whole_host().fill(program.maps["job_scope"], 0)       # job 1: a test-run packet has no socket
        yield program.egress_fn.fd
    finally:
        program.close()


def query(labels: list[bytes], sport: int) -> bytes:
    """A UDP DNS query for the name made of labels, as they go on the wire."""
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    dns = struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!2H", 1, 1)
    return bytes(Ether() / IP(src="10.0.0.1", dst=RESOLVER) / UDP(sport=sport, dport=53) / Raw(dns))


def verdict(fd: int, frame: bytes) -> int:
    ctx = ctypes.create_string_buffer(tr.SKB_CTX_SIZE)
    data = ctypes.create_string_buffer(frame, len(frame))
    out = ctypes.create_string_buffer(len(frame) + 512)
    attr = tr._TestAttr(prog_fd=fd, data_size_in=len(frame), data_in=ctypes.addressof(data),
                        data_size_out=len(out), data_out=ctypes.addressof(out), repeat=1,
                        ctx_size_in=tr.SKB_CTX_SIZE, ctx_in=ctypes.addressof(ctx))
    assert tr._libc.syscall(tr.SYS_BPF, tr.BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) == 0, \
        ctypes.get_errno()
    return attr.retval


def dotted(name: str) -> list[bytes]:
    return [label.encode() for label in name.split(".")]


LONG_LABELS = [b"x" * 60, b"y" * 60]               # with .files.pythonhosted.org: 145 bytes

CASES = [
    ("pypi.org", dotted("pypi.org"), PASSED),
    ("upper case folds", dotted("PyPI.ORG"), PASSED),
    ("8 bytes, one full chunk", dotted("abcd.org"), PASSED),
    ("16 bytes, two full chunks", dotted("abcdefghijkl.org"), PASSED),
    ("a longer name is not its prefix", dotted("abcdefghijklm.org"), ANSWERED_NXDOMAIN),
    ("under a *. rule", dotted("files.pythonhosted.org"), PASSED),
    ("the *. rule's own name is not under it", dotted("pythonhosted.org"), ANSWERED_NXDOMAIN),
    ("unlisted", dotted("pypi.org.evil.com"), ANSWERED_NXDOMAIN),
    ("a suffix of an allowed name", dotted("ypi.org"), ANSWERED_NXDOMAIN),
    ("a '.' inside a label is no separator", [b"a.files", b"pythonhosted", b"org"], ANSWERED_NXDOMAIN),
    ("a label holding the whole allowed name", [b"pypi.org"], ANSWERED_NXDOMAIN),
    ("longer than the hashed span, under a *. rule", LONG_LABELS + dotted("files.pythonhosted.org"), PASSED),
    ("longer than the span, '.' inside a label near the end",
     LONG_LABELS + [b"a.files", b"pythonhosted", b"org"], ANSWERED_NXDOMAIN),
    ("longer than the span, '.' inside a label before it", [b"x" * 30 + b"." + b"x" * 29, b"y" * 60, b"z" * 20]
     + dotted("files.pythonhosted.org"), PASSED),
]


@pytest.mark.parametrize("labels,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_name_check(egress_fd, labels, expected):
    sport = 40000 + (hash(tuple(labels)) & 0x3FFF)
    assert verdict(egress_fd, query(labels, sport)) == expected
