"""Ethernet framing for crafted test packets.

The addresses are given because, left unset, scapy resolves the destination
MAC by ARP or neighbour solicitation on the host's own interface: packets the
tests must not send, and seconds of timeout per frame.
"""

from __future__ import annotations

from scapy.layers.l2 import Ether

CLIENT_MAC = "02:00:00:00:00:01"
SERVER_MAC = "02:00:00:00:00:02"


def ether() -> Ether:
    return Ether(src=CLIENT_MAC, dst=SERVER_MAC)
