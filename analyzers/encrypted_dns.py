"""``encrypted_dns``: DNS-over-TLS/QUIC (port 853) and DNS-over-HTTPS to known resolvers.

Lookups that go over DoT, DoQ or DoH never reach dns.log: a job (or a
payload) that switches to them hides every name it resolves, including a
tunnel's. Ordinary build tools use the system resolver.

Input: the destination table (``destinations.destination_table``). Output:
one finding per (session, resolver address). ``medium``: the lookups are
invisible, not proven malicious; ``high`` when more than ``HIDDEN_BYTES``
went to it, i.e. far more than lookups need.
"""

from __future__ import annotations

from .findings import human_bytes, make_findings

ANALYZER = "encrypted_dns"

#: DoT (RFC 7858) and DoQ (RFC 9250) port.
DOT_PORT = 853
HTTPS_PORT = 443

#: Public DoH service names, from each provider's documentation of its DoH endpoint.
DOH_NAMES = frozenset({
    "dns.google", "dns.google.com",  # Google Public DNS
    "cloudflare-dns.com", "mozilla.cloudflare-dns.com", "one.one.one.one", "1dot1dot1dot1.cloudflare-dns.com",  # Cloudflare
    "security.cloudflare-dns.com", "family.cloudflare-dns.com",
    "dns.quad9.net", "dns9.quad9.net", "dns10.quad9.net", "dns11.quad9.net",  # Quad9
    "doh.opendns.com", "doh.familyshield.opendns.com",  # Cisco OpenDNS
    "dns.adguard-dns.com", "dns.adguard.com", "unfiltered.adguard-dns.com",  # AdGuard DNS
    "dns.nextdns.io",  # NextDNS
    "doh.cleanbrowsing.org",  # CleanBrowsing
    "doh.mullvad.net", "dns.mullvad.net",  # Mullvad
    "dns.sb", "doh.dns.sb",  # DNS.SB
    "dns.controld.com", "freedns.controld.com",  # Control D
})

#: Public resolver addresses (anycast), from the same providers' documentation:
#: a connection to them on 443 without a name is DoH to a hard-coded address.
RESOLVER_ADDRESSES = frozenset({
    "1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001",  # Cloudflare
    "8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",  # Google
    "9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9",  # Quad9
    "208.67.222.222", "208.67.220.220",  # OpenDNS
    "94.140.14.14", "94.140.15.15",  # AdGuard
    "185.228.168.168",  # CleanBrowsing
})

#: Bytes sent that are more than lookups: 1,000 DoH queries are ~100 KB.
HIDDEN_BYTES = 1_000_000


def encrypted_dns(dest):
    if dest is None or dest.empty:
        return make_findings([])
    recs = []
    for r in dest.itertuples(index=False):
        if r.local or r.port != r.port or r.port is None:
            continue
        port = int(r.port)
        names = [n for n in r.names if n in DOH_NAMES]
        if port == DOT_PORT:
            kind = "DNS-over-TLS" if r.proto == "tcp" else "DNS-over-QUIC"
        elif port == HTTPS_PORT and (names or r.address in RESOLVER_ADDRESSES):
            kind = "DNS-over-HTTPS"
        else:
            continue
        who = names[0] if names else r.address
        recs.append({
            "analyzer": ANALYZER,
            "severity": "high" if r.orig_bytes >= HIDDEN_BYTES else "medium",
            "indicator": who,
            "summary": (f"{r.connections} {kind} connection{'s' if r.connections != 1 else ''} to {who} "
                        f"({r.proto} port {port}): lookups made this way are not in dns.log; {human_bytes(r.orig_bytes)} sent"),
            "evidence": {"kind": kind, "address": r.address, "names": list(r.names)[:5], "port": port, "proto": r.proto,
                         "connections": int(r.connections), "orig_bytes": int(r.orig_bytes), "resp_bytes": int(r.resp_bytes),
                         "first_seen": r.first_seen.isoformat()},
            "sessions": [r.session] if r.session else [],
        })
    return make_findings(recs)
