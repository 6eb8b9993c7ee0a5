"""The job scopes' verdicts at TC, in the kernel (bpf/job_scope.h), with BPF_PROG_TEST_RUN.

A test-run packet has no socket, so with a cgroup as the job it is nobody's
in particular: not the job's, and it must pass untouched. With the whole host
as a job (--block-host) the same packets are that job's and judged by its
policy, and by no other job's. Nothing is attached.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from scapy.all import IP, TCP, UDP, Ether, Raw
from test_dns_name_check import verdict

from cicd_audit.policy import parse_policy
from cicd_audit.recorder.attach.job_scope import JobScope, job_of_slot
from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.kernel.block_tables import PolicyTables, clear_job
from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings

pytestmark = [pytest.mark.root]

RESOLVER = "10.0.0.53"
PASSED, DROPPED, ANSWERED_NXDOMAIN = 0xFFFFFFFF, 2, 7


@pytest.fixture(scope="module")
def program():
    program = CaptureProgram(ProgramSettings(attribution=True, block=True), lambda data, size: None)
    try:
        PolicyTables.build(parse_policy("allowed:\n  domains: [pypi.org]\n"),
                           resolvers=[ipaddress.ip_address(RESOLVER)]).fill(program.maps, job_of_slot(0))
        yield program
    finally:
        program.close()


def syn_to_unlisted(sport: int) -> bytes:
    return bytes(Ether() / IP(src="10.0.0.1", dst="192.0.2.9") / TCP(sport=sport, dport=443, flags="S"))


def query_unlisted(sport: int) -> bytes:
    qname = b"".join(bytes([len(x)]) + x for x in (b"evil", b"test")) + b"\0"
    dns = struct.pack("!6H", 0x4242, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!2H", 1, 1)
    return bytes(Ether() / IP(src="10.0.0.1", dst=RESOLVER) / UDP(sport=sport, dport=53) / Raw(dns))


def set_scope(program, scope: JobScope | None, slot: int = 0) -> None:
    """One job in one slot (None: none), every other slot free."""
    for other in range(abi.JOB_SLOTS):
        JobScope.clear(program.maps["job_scope"], other)
    if scope is not None:
        scope.fill(program.maps["job_scope"], slot)


def conn(program, sport: int) -> abi.Conn:
    """The connection (in the IPv4 table) with this local port."""
    for raw_key in program.conns4.keys():
        key = abi.ConnKey4.from_buffer_copy(raw_key)
        if sport in tuple(key.port):
            return abi.Conn.from_buffer_copy(program.conns4.lookup(raw_key))
    raise AssertionError(f"no connection from port {sport} in the table")


def conn_flags(program, sport: int) -> int:
    return conn(program, sport).flags


def test_the_whole_host_is_judged(program):
    set_scope(program, JobScope.whole_host())
    assert verdict(program.egress_fn.fd, syn_to_unlisted(40001)) == DROPPED
    assert verdict(program.egress_fn.fd, query_unlisted(40002)) == ANSWERED_NXDOMAIN
    assert conn_flags(program, 40001) & (abi.CONN_IN_JOB | abi.CONN_BLOCKED) == abi.CONN_IN_JOB | abi.CONN_BLOCKED
    assert conn(program, 40001).proc.job == job_of_slot(0)


def test_a_packet_that_is_not_the_jobs_passes_untouched_and_is_recorded(program, tmp_path):
    # Any cgroup id: the test-run packet has no socket, so it is in no job.
    set_scope(program, JobScope(tmp_path, cgroup_id=12345, level=1))
    assert verdict(program.egress_fn.fd, syn_to_unlisted(40003)) == PASSED
    assert verdict(program.egress_fn.fd, query_unlisted(40004)) == PASSED
    for sport in (40003, 40004):
        assert conn_flags(program, sport) & (abi.CONN_IN_JOB | abi.CONN_BLOCKED) == 0


def test_no_job_means_nothing_is_judged(program):
    set_scope(program, None)
    assert verdict(program.egress_fn.fd, syn_to_unlisted(40005)) == PASSED
    assert verdict(program.egress_fn.fd, query_unlisted(40006)) == PASSED
    assert conn_flags(program, 40005) & (abi.CONN_IN_JOB | abi.CONN_BLOCKED) == 0


def syn_to(dst: str, sport: int) -> bytes:
    return bytes(Ether() / IP(src="10.0.0.1", dst=dst) / TCP(sport=sport, dport=443, flags="S"))


def query_for(name: str, sport: int) -> bytes:
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
    dns = struct.pack("!6H", 0x4343, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!2H", 1, 1)
    return bytes(Ether() / IP(src="10.0.0.1", dst=RESOLVER) / UDP(sport=sport, dport=53) / Raw(dns))


def test_each_job_is_judged_by_its_own_policy_only(program):
    """Job 1 (the fixture's policy: pypi.org) and job 3, which allows 198.51.100.0/24 and
    example.org. A packet that is job 3's is judged by job 3's entries alone: job 1's name
    is refused to it, and job 3's address and name are refused to job 1."""
    job3 = job_of_slot(2)
    PolicyTables.build(parse_policy("allowed:\n  domains: [example.org]\n  cidrs: [198.51.100.0/24]\n"),
                       resolvers=[ipaddress.ip_address(RESOLVER)]).fill(program.maps, job3)
    try:
        set_scope(program, JobScope.whole_host(), slot=2)
        assert verdict(program.egress_fn.fd, syn_to("198.51.100.7", 40011)) == PASSED
        assert conn(program, 40011).proc.job == job3
        assert verdict(program.egress_fn.fd, query_for("example.org", 40012)) == PASSED
        assert verdict(program.egress_fn.fd, query_for("pypi.org", 40013)) == ANSWERED_NXDOMAIN

        set_scope(program, JobScope.whole_host(), slot=0)
        assert verdict(program.egress_fn.fd, syn_to("198.51.100.7", 40014)) == DROPPED
        assert verdict(program.egress_fn.fd, query_for("example.org", 40015)) == ANSWERED_NXDOMAIN
        assert verdict(program.egress_fn.fd, query_for("pypi.org", 40016)) == PASSED
    finally:
        assert clear_job(program.maps, job3) > 0
    # job 1's entries are untouched by clearing job 3's
    set_scope(program, JobScope.whole_host(), slot=0)
    assert verdict(program.egress_fn.fd, query_for("pypi.org", 40017)) == PASSED


def answer_for(name: str, address: str, dport: int) -> bytes:
    qname = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0"
    dns = (struct.pack("!6H", 0x4444, 0x8180, 1, 1, 0, 0) + qname + struct.pack("!2H", 1, 1)
           + b"\xc0\x0c" + struct.pack("!2HIH", 1, 1, 300, 4) + ipaddress.ip_address(address).packed)
    return bytes(Ether() / IP(src=RESOLVER, dst="10.0.0.1") / UDP(sport=53, dport=dport) / Raw(dns))


def learnt_jobs(program, address: str) -> set[int]:
    mapped = ipaddress.ip_address(f"::ffff:{address}").packed
    keys = (abi.LearntKey.from_buffer_copy(raw) for raw in program.maps["allow_addrs"].keys())
    return {key.job for key in keys if bytes(key.addr) == mapped}


def test_an_answer_allows_its_address_to_the_job_that_asked_only(program):
    set_scope(program, JobScope.whole_host(), slot=0)
    assert verdict(program.egress_fn.fd, query_for("pypi.org", 40021)) == PASSED
    assert verdict(program.packet_fn.fd, answer_for("pypi.org", "203.0.113.5", 40021)) == PASSED
    assert learnt_jobs(program, "203.0.113.5") == {job_of_slot(0)}
    assert verdict(program.egress_fn.fd, syn_to("203.0.113.5", 40022)) == PASSED

    set_scope(program, JobScope.whole_host(), slot=2)
    assert verdict(program.egress_fn.fd, syn_to("203.0.113.5", 40023)) == DROPPED
