"""The job's DNS through a local stub resolver, sent upstream instead (bpf/process.h).

On most runner hosts /etc/resolv.conf names a stub on the loopback
(systemd-resolved's 127.0.0.53, a dnsmasq at 127.0.1.1). The stub serves the
whole host, so the query it forwards upstream is nobody's in particular: if
the job's lookups went through it, blocking could neither judge the job's
names (a DNS tunnel would pass) nor learn the addresses its answers allow,
and judging the stub's own queries would hurt every other process on the
host. So the job's sockets that address a stub are pointed at an upstream
resolver of the same family at connect()/sendmsg(): the query leaves from
the job's own socket, TC judges and learns as for any job query, and
recvmsg() shows the reply as coming from the stub. The stub never carries
the job's queries; everyone else still uses it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder.kernel import abi
from cicd_audit.recorder.kernel.block_tables import RESOLVED_STUBS, _as_v6_address

DNS_PORT = abi.DNS_PORT


@dataclass(frozen=True)
class StubRedirect:
    stub: ipaddress.IPv4Address | ipaddress.IPv6Address
    upstream: ipaddress.IPv4Address | ipaddress.IPv6Address

    def fill(self, stubs_map) -> None:
        stubs_map.update(bytes(_endpoint(self.stub)), bytes(_endpoint(self.upstream)))


def stub_redirects(nameservers: Iterable, resolvers: Iterable) -> list[StubRedirect]:
    """A redirect for each loopback nameserver (and systemd-resolved's stubs, when one is
    in use) to the first non-loopback resolver of its family.

    EnvironmentProblem when a stub has no upstream of its family: the job's
    DNS could not be judged, so blocking would be a pretence."""
    stubs = [a for a in nameservers if a.is_loopback]
    if any(a in RESOLVED_STUBS for a in stubs):
        stubs += sorted(RESOLVED_STUBS)
    upstreams = [a for a in resolvers if not a.is_loopback]
    redirects = []
    for stub in dict.fromkeys(stubs):
        upstream = next((a for a in upstreams if a.version == stub.version), None)
        if upstream is None:
            raise EnvironmentProblem(
                f"the job's DNS goes through the local resolver {stub}, whose upstream is unknown: "
                f"name one with --resolver ADDR (IPv{stub.version}), so the job's lookups can be judged")
        redirects.append(StubRedirect(stub, upstream))
    return redirects


def _endpoint(address) -> abi.DnsEndpoint:
    e = abi.DnsEndpoint()
    e.addr[:] = _as_v6_address(address).packed
    e.port = DNS_PORT
    return e
