"""The job scope's verdicts at TC, in the kernel (bpf/job_scope.h), with BPF_PROG_TEST_RUN.

A test-run packet has no socket, so with a job scope it is nobody's in
particular: not the job's, and it must pass untouched. With the whole host
as the job (an all-zero scope: --block-host) the same packets are judged.
Nothing is attached.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from scapy.all import IP, TCP, UDP, Ether, Raw
from test_dns_name_check import verdict

from cicd_audit.policy import parse_policy
from cicd_audit.recorder.attach.job_scope import JobScope
from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.kernel.block_tables import PolicyTables
from cicd_audit.recorder.kernel.bpf_program import CaptureProgram, ProgramSettings

pytestmark = [pytest.mark.root]

RESOLVER = "10.0.0.53"
PASSED, DROPPED, ANSWERED_NXDOMAIN = 0xFFFFFFFF, 2, 7


@pytest.fixture(scope="module")
def program():
    program = CaptureProgram(ProgramSettings(attribution=True, block=True), lambda data, size: None)
    try:
        PolicyTables.build(parse_policy("allowed:\n  domains: [pypi.org]\n"),
                           resolvers=[ipaddress.ip_address(RESOLVER)]).fill(program.maps)
        yield program
    finally:
        program.close()


def syn_to_unlisted(sport: int) -> bytes:
    return bytes(Ether() / IP(src="10.0.0.1", dst="192.0.2.9") / TCP(sport=sport, dport=443, flags="S"))


def query_unlisted(sport: int) -> bytes:
    qname = b"".join(bytes([len(x)]) + x for x in (b"evil", b"test")) + b"\0"
    dns = struct.pack("!6H", 0x4242, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!2H", 1, 1)
    return bytes(Ether() / IP(src="10.0.0.1", dst=RESOLVER) / UDP(sport=sport, dport=53) / Raw(dns))


def set_scope(program, scope: JobScope) -> None:
    scope.fill(program.maps["job_scope"])


def conn_flags(program, sport: int) -> int:
    """The flags of the connection (in the IPv4 table) with this local port."""
    for raw_key in program.conns4.keys():
        key = abi.ConnKey4.from_buffer_copy(raw_key)
        if sport in tuple(key.port):
            return abi.Conn.from_buffer_copy(program.conns4.lookup(raw_key)).flags
    raise AssertionError(f"no connection from port {sport} in the table")


def test_the_whole_host_is_judged(program):
    set_scope(program, JobScope.whole_host())
    assert verdict(program.egress_fn.fd, syn_to_unlisted(40001)) == DROPPED
    assert verdict(program.egress_fn.fd, query_unlisted(40002)) == ANSWERED_NXDOMAIN
    assert conn_flags(program, 40001) & (abi.CONN_IN_JOB | abi.CONN_BLOCKED) == abi.CONN_IN_JOB | abi.CONN_BLOCKED


def test_a_packet_that_is_not_the_jobs_passes_untouched_and_is_recorded(program, tmp_path):
    # Any cgroup id: the test-run packet has no socket, so it is in no job.
    set_scope(program, JobScope(tmp_path, cgroup_id=12345, level=1))
    assert verdict(program.egress_fn.fd, syn_to_unlisted(40003)) == PASSED
    assert verdict(program.egress_fn.fd, query_unlisted(40004)) == PASSED
    for sport in (40003, 40004):
        assert conn_flags(program, sport) & (abi.CONN_IN_JOB | abi.CONN_BLOCKED) == 0
