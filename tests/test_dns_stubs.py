"""Which local stub resolvers the job's lookups are taken away from, and to where (recorder/attach/dns_stubs.py)."""

from __future__ import annotations

import ipaddress

import pytest

from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder.attach.dns_stubs import stub_redirects
from cicd_audit.recorder.kernel import abi

A = ipaddress.ip_address


def pairs(redirects):
    return [(str(r.stub), str(r.upstream)) for r in redirects]


def test_systemd_resolved_stub_goes_to_its_upstream_of_the_same_family():
    got = stub_redirects([A("127.0.0.53")], [A("127.0.0.53"), A("2001:db8::53"), A("192.0.2.53")])
    # Both of resolved's stubs: a job may address 127.0.0.54 by hand.
    assert pairs(got) == [("127.0.0.53", "192.0.2.53"), ("127.0.0.54", "192.0.2.53")]


def test_non_loopback_nameservers_are_left_alone():
    assert stub_redirects([A("192.0.2.53"), A("2001:db8::53")], [A("192.0.2.53")]) == []


def test_ipv6_loopback_stub():
    assert pairs(stub_redirects([A("::1")], [A("192.0.2.53"), A("2001:db8::53")])) == [("::1", "2001:db8::53")]


def test_a_stub_without_an_upstream_is_refused_with_the_fix():
    with pytest.raises(EnvironmentProblem, match=r"127\.0\.1\.1.*--resolver ADDR \(IPv4\)"):
        stub_redirects([A("127.0.1.1")], [A("127.0.1.1"), A("2001:db8::53")])


def test_map_entries_are_v4_mapped_with_the_port():
    class Map(dict):
        def update(self, k, v):
            self[k] = v
    m = Map()
    stub_redirects([A("127.0.0.1")], [A("192.0.2.53")])[0].fill(m)
    (key, value), = m.items()
    stub, upstream = abi.DnsEndpoint.from_buffer_copy(key), abi.DnsEndpoint.from_buffer_copy(value)
    assert bytes(stub.addr) == A("::ffff:127.0.0.1").packed and stub.port == 53
    assert bytes(upstream.addr) == A("::ffff:192.0.2.53").packed and upstream.port == 53
