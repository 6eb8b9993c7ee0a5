"""The lab's one address plan, shared by the tests, `cicd-audit demo` and the benchmarks.

    client namespace (the CI runner)  <veth>  server namespace (its "internet")
    10.99.0.1/24   fd00:ca::1/64              10.99.0.2/24   fd00:ca::2/64   dnsmasq, HTTP
                                              10.99.0.5      fd00:ca::5      a second server, never in DNS answers
    10.99.0.3: a static neighbour of the client's that nobody answers (a black hole)

    container namespace  <veth>  client namespace (its router)
    10.98.0.2/24   fd00:cb::2/64  10.98.0.1/24   fd00:cb::1/64

A script that needs more server addresses takes them from `server_v4(host)`
(10.99.0.<host>, outside the ones above); networks a script builds on top of
the lab (tunnels, pods) use 10.97.0.0/16.
"""

from __future__ import annotations

V4 = ("10.99.0.1", "10.99.0.2")             # the client, the server
V6 = ("fd00:ca::1", "fd00:ca::2")
SUBNET_V4, SUBNET_V6 = "10.99.0.0/24", "fd00:ca::/64"
OTHER_V4, OTHER_V6 = "10.99.0.5", "fd00:ca::5"   # a second server address, never in DNS answers
UNREACHABLE_V4 = "10.99.0.3"                 # static neighbour, nobody answers
UNREACHABLE_MAC = "02:ca:00:00:00:99"
CONTAINER_V4 = ("10.98.0.1", "10.98.0.2")   # the client namespace's side (the gateway), the container
CONTAINER_V6 = ("fd00:cb::1", "fd00:cb::2")
CONTAINER_SUBNET_V4, CONTAINER_SUBNET_V6 = "10.98.0.0/24", "fd00:cb::/64"

DNS_DOMAIN = "example.test"                  # dnsmasq's default answers: every name under it
DNS_NAME = f"www.{DNS_DOMAIN}"
HTTP_PORT = 8080

_TAKEN = {int(a.rsplit(".", 1)[1]) for a in (*V4, OTHER_V4, UNREACHABLE_V4)}


def server_v4(host: int) -> str:
    """10.99.0.<host>: one more address in the lab's subnet, for a script's own server or answer."""
    if host in _TAKEN or not 0 < host < 255:
        raise ValueError(f"10.99.0.{host} is not free in the lab's address plan")
    return f"10.99.0.{host}"
