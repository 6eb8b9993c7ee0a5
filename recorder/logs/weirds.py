"""Names for the kernel's weird codes: Zeek's weird names where Zeek has one,
and the analyzer Zeek names as their source (weird.log's `source`)."""

from __future__ import annotations

from cicd_audit.recorder.kernel.abi import WeirdCode

WEIRD_NAMES = {
    WeirdCode.TRUNCATED_IP: "truncated_IP",
    WeirdCode.BAD_IP_CHECKSUM: "bad_IP_checksum",
    WeirdCode.TRUNCATED_HEADER: "truncated_header",
    WeirdCode.BAD_TCP_CHECKSUM: "bad_TCP_checksum",
    WeirdCode.BAD_UDP_CHECKSUM: "bad_UDP_checksum",
    WeirdCode.BAD_ICMP_CHECKSUM: "bad_ICMP_checksum",
    WeirdCode.IP_FRAGMENT: "cicd_audit_unreassembled_fragment",
    WeirdCode.UNKNOWN_IP_VERSION: "unknown_ip_version",
    WeirdCode.TOO_MANY_EXT_HEADERS: "cicd_audit_too_many_ipv6_ext_headers",
    WeirdCode.DNS_TRUNCATED: "cicd_audit_dns_message_truncated",
    WeirdCode.IP_HDR_LEN_ZERO: "ip_hdr_len_zero",
    WeirdCode.TUNNEL_MAX_DEPTH: "exceeded_tunnel_max_depth",
    WeirdCode.TRUNCATED_GRE: "truncated_GRE",
    WeirdCode.GRE_UNSUPPORTED: "unknown_gre_version",
    WeirdCode.TUNNEL_MAX_CHANGES: "tunnel_max_changes_per_connection_exceeded",
    WeirdCode.BAD_TCP_HEADER_LEN: "bad_TCP_header_len",
    WeirdCode.TEREDO_BUBBLE_WITH_PAYLOAD: "Teredo_bubble_with_payload",
    WeirdCode.INVALID_IP_HEADER_SIZE: "invalid_IP_header_size",
    WeirdCode.IPV4_MIN_HEADER_SIZE: "IPv4_min_header_size",
}

# The analyzer that raises each in Zeek (its name, as weird.log writes it); the transport's for truncated_header.
_SOURCES = {
    WeirdCode.TRUNCATED_IP: "IP",
    WeirdCode.BAD_IP_CHECKSUM: "IP",
    WeirdCode.UNKNOWN_IP_VERSION: "IP",
    WeirdCode.IP_HDR_LEN_ZERO: "IP",
    WeirdCode.INVALID_IP_HEADER_SIZE: "IP",
    WeirdCode.IPV4_MIN_HEADER_SIZE: "IP",
    WeirdCode.BAD_TCP_CHECKSUM: "TCP",
    WeirdCode.BAD_TCP_HEADER_LEN: "TCP",
    WeirdCode.BAD_UDP_CHECKSUM: "UDP",
    WeirdCode.BAD_ICMP_CHECKSUM: "ICMP",
    WeirdCode.TRUNCATED_GRE: "GRE",
    WeirdCode.GRE_UNSUPPORTED: "GRE",
    WeirdCode.TEREDO_BUBBLE_WITH_PAYLOAD: "TEREDO",
}
_TRANSPORTS = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMP"}

# Raised by Zeek's IP analyzer before it takes the packet's addresses: weirds about no flow at all,
# whatever part of the key the kernel had parsed.
ABOUT_NO_FLOW = frozenset({
    WeirdCode.TRUNCATED_IP, WeirdCode.UNKNOWN_IP_VERSION, WeirdCode.IP_HDR_LEN_ZERO,
    WeirdCode.INVALID_IP_HEADER_SIZE, WeirdCode.IPV4_MIN_HEADER_SIZE,
})


def weird_name(code: int) -> str:
    try:
        return WEIRD_NAMES[WeirdCode(code)]
    except (ValueError, KeyError):
        return f"cicd_audit_weird_{code}"


def weird_source(code: int, ip_proto: int) -> str | None:
    """weird.log's `source` for a kernel weird: Zeek's analyzer name, or None where the recorder cannot tell it."""
    if code == WeirdCode.TRUNCATED_HEADER:
        return _TRANSPORTS.get(ip_proto)
    return _SOURCES.get(code)
