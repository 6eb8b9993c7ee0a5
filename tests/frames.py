"""Ethernet framing for crafted test packets, and flows made of them.

The addresses are given because, left unset, scapy resolves the destination
MAC by ARP or neighbour solicitation on the host's own interface: packets the
tests must not send, and seconds of timeout per frame.
"""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

CLIENT_MAC = "02:00:00:00:00:01"
SERVER_MAC = "02:00:00:00:00:02"


def ether() -> Ether:
    return Ether(src=CLIENT_MAC, dst=SERVER_MAC)


def udp_flows(count: int, first: int = 0) -> list:
    """One UDP datagram each of flows first..first+count-1, an IPv4 and an IPv6 one per flow
    (192.0.2.1 -> 198.51.100.N+1 and 2001:db8::1 -> 2001:db8:1::N+1, from port 40000+N),
    1 ms apart from 1,700,000,000 s on."""
    frames, t = [], 1_700_000_000.0
    for i in range(first, first + count):
        for ip in (IP(src="192.0.2.1", dst=f"198.51.100.{i + 1}"), IPv6(src="2001:db8::1", dst=f"2001:db8:1::{i + 1}")):
            frame = ether() / ip / UDP(sport=40000 + i, dport=9000) / b"payload"
            frame.time = t
            t += 0.001
            frames.append(frame)
    return frames
