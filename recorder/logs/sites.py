"""Zeek's Site::private_address_space (base/utils/site.zeek), which Zeek treats as
Site::local_nets by default: it decides conn.log's local_orig and local_resp."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

PRIVATE_ADDRESS_SPACE = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "2002::/24",                 # "this network" (RFC 791) and its 6to4 form (RFC 3056)
    "10.0.0.0/8", "2002:a00::/24",            # private use (RFC 1918)
    "100.64.0.0/10", "2002:6440::/26",        # shared address space (RFC 6598)
    "127.0.0.0/8", "2002:7f00::/24",          # loopback (RFC 1122)
    "169.254.0.0/16", "2002:a9fe::/32",       # link local (RFC 3927)
    "172.16.0.0/12", "2002:ac10::/28",        # private use (RFC 1918)
    "192.0.0.0/24", "2002:c000::/40",         # IETF protocol assignments (RFC 6890)
    "192.0.2.0/24", "2002:c000:200::/40",     # TEST-NET-1 (RFC 5737)
    "192.168.0.0/16", "2002:c0a8::/32",       # private use (RFC 1918)
    "198.18.0.0/15", "2002:c612::/31",        # benchmarking (RFC 2544)
    "198.51.100.0/24", "2002:c633:6400::/40",  # TEST-NET-2 (RFC 5737)
    "203.0.113.0/24", "2002:cb00:7100::/40",  # TEST-NET-3 (RFC 5737)
    "224.0.0.0/24", "2002:e000::/40",         # multicast local network control (RFC 5771)
    "239.0.0.0/8", "2002:ef00::/24",          # administratively scoped multicast (RFC 2365)
    "240.0.0.0/4", "2002:f000::/20",          # reserved (RFC 1112)
    "255.255.255.255/32", "2002:ffff:ffff::/48",  # limited broadcast (RFC 919)
    "::/128", "::1/128",                      # unspecified, loopback (RFC 4291)
    "64:ff9b:1::/48",                         # local-use IPv4/IPv6 translation (RFC 8215)
    "100::/64",                               # discard-only (RFC 6666)
    "2001::/23", "2001:2::/48",               # IETF protocol assignments, benchmarking (RFC 2928, 5180)
    "2001:db8::/32",                          # documentation (RFC 3849)
    "fc00::/7",                               # unique local (RFC 4193)
    "fe80::/10",                              # link-local unicast (RFC 4291)
    "fec0::/10",                              # site-local, deprecated (RFC 3879)
))


@lru_cache(maxsize=65536)
def is_local(address: str) -> bool:
    addr = ipaddress.ip_address(address)
    return any(addr.version == net.version and addr in net for net in PRIVATE_ADDRESS_SPACE)
