"""Names for the kernel's weird codes: Zeek's weird names where Zeek has one,
and the analyzer Zeek names as their source (weird.log's `source`).

A weird a packet analyzer raises about a packet (not about a connection)
inside a tunnel has "_in_tunnel" appended, as Zeek's session manager does
(`truncated_IP_in_tunnel`); a connection's weirds keep their names.
"""

from __future__ import annotations

from typing import NamedTuple

from cicd_audit.recorder.kernel.abi import TunnelType, WeirdCode

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
    WeirdCode.VXLAN_EMPTY_PACKET: "vxlan_empty_packet",
    WeirdCode.GENEVE_EMPTY_PACKET: "geneve_empty_packet",
    WeirdCode.GENEVE_INVALID_VERSION: "geneve_invalid_version",
    WeirdCode.TRUNCATED_802_11_HEADER: "truncated_802_11_header",
    WeirdCode.TRUNCATED_802_11_LLC_HEADER: "truncated_802_11_llc_header",
    WeirdCode.TRUNCATED_802_11_AMSDU_HEADER: "truncated_802_11_amsdu_header",
    WeirdCode.TRUNCATED_802_11_AMSDU_PACKET: "truncated_802_11_amsdu_packet",
    WeirdCode.INVALID_802_11_AMSDU_INNER_PACKET: "invalid_802_11_amsdu_inner_packet",
    WeirdCode.AMSDU_REST_UNREAD: "cicd_audit_802_11_amsdu_rest_unread",
    WeirdCode.TRUNCATED_ETHERNET_FRAME: "truncated_ethernet_frame",
    WeirdCode.UNDEFINED_ETHER_TYPE: "undefined_ether_type",
    WeirdCode.TRUNCATED_VLAN_HEADER: "truncated_VLAN_header",
    WeirdCode.UNDEFINED_VLAN_PROTOCOL: "undefined_vlan_protocol",
    WeirdCode.TRIPLE_TAGGED_VLAN: "triple_tagged_vlan_unsupported",
    WeirdCode.TRUNCATED_IP_LEN: "truncated_IP_len",
    WeirdCode.TRUNCATED_INNER_IP: "truncated_inner_IP",
    WeirdCode.INNER_IP_PAYLOAD_LENGTH_MISMATCH: "inner_IP_payload_length_mismatch",
    WeirdCode.INVALID_INNER_IP_VERSION: "invalid_inner_IP_version",
    WeirdCode.INTERNALLY_TRUNCATED_HEADER: "internally_truncated_header",
    WeirdCode.IP_INTERNALLY_TRUNCATED_HEADER: "internally_truncated_header",
}
# Fixed texts Zeek gives some weirds (the kernel's detail is then unused).
_ADDL = {WeirdCode.TRIPLE_TAGGED_VLAN: "inner VLAN tag overwritten"}
IN_TUNNEL = "_in_tunnel"

# Zeek's 802.11 analyzer's weirds, and the recorder's own about the A-MSDU subframes it left unread.
# The recorder reads 802.11 inside GRE only (Aruba), so the frame is always inside a tunnel, and these
# are about no flow: the inner packet has no IP header yet.
_IEEE802_11 = (
    WeirdCode.TRUNCATED_802_11_HEADER, WeirdCode.TRUNCATED_802_11_LLC_HEADER,
    WeirdCode.TRUNCATED_802_11_AMSDU_HEADER, WeirdCode.TRUNCATED_802_11_AMSDU_PACKET,
    WeirdCode.INVALID_802_11_AMSDU_INNER_PACKET, WeirdCode.AMSDU_REST_UNREAD,
)

# The analyzer that raises each in Zeek (its name, as weird.log writes it); the transport's for
# (internally_)truncated_header about a transport header.
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
    WeirdCode.VXLAN_EMPTY_PACKET: "VXLAN",
    WeirdCode.GENEVE_EMPTY_PACKET: "GENEVE",
    WeirdCode.GENEVE_INVALID_VERSION: "GENEVE",
    **dict.fromkeys(_IEEE802_11, "IEEE802_11"),
    WeirdCode.TRUNCATED_ETHERNET_FRAME: "ETHERNET",
    WeirdCode.UNDEFINED_ETHER_TYPE: "ETHERNET",
    WeirdCode.TRUNCATED_VLAN_HEADER: "VLAN",
    WeirdCode.UNDEFINED_VLAN_PROTOCOL: "VLAN",
    WeirdCode.TRIPLE_TAGGED_VLAN: "VLAN",
    WeirdCode.TRUNCATED_IP_LEN: "IP",
    WeirdCode.IP_INTERNALLY_TRUNCATED_HEADER: "IP",
    WeirdCode.TRUNCATED_INNER_IP: "IPTUNNEL",
    WeirdCode.INNER_IP_PAYLOAD_LENGTH_MISMATCH: "IPTUNNEL",
    WeirdCode.INVALID_INNER_IP_VERSION: "IPTUNNEL",
}
# exceeded_tunnel_max_depth comes from the analyzer of the tunnel that was not opened (its type in
# the event's detail). GTP's says "tunnel_depth", and about no packet.
_DEPTH_SOURCES = {
    TunnelType.IP: "IPTUNNEL", TunnelType.GRE: "IPTUNNEL", TunnelType.VXLAN: "VXLAN",
    TunnelType.GENEVE: "GENEVE", TunnelType.AYIYA: "AYIYA", TunnelType.TEREDO: "TEREDO",
}
_TRANSPORTS = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMP"}

# Raised by Zeek's link-layer and IP analyzers before it takes the packet's addresses: weirds about
# no flow at all, whatever part of the key the kernel had parsed.
ABOUT_NO_FLOW = frozenset({
    WeirdCode.TRUNCATED_IP, WeirdCode.UNKNOWN_IP_VERSION, WeirdCode.IP_HDR_LEN_ZERO,
    WeirdCode.INVALID_IP_HEADER_SIZE, WeirdCode.IPV4_MIN_HEADER_SIZE, *_IEEE802_11,
    WeirdCode.TRUNCATED_ETHERNET_FRAME, WeirdCode.UNDEFINED_ETHER_TYPE, WeirdCode.TRUNCATED_VLAN_HEADER,
    WeirdCode.UNDEFINED_VLAN_PROTOCOL, WeirdCode.TRIPLE_TAGGED_VLAN, WeirdCode.TRUNCATED_IP_LEN,
    WeirdCode.IP_INTERNALLY_TRUNCATED_HEADER,
})


class KernelWeird(NamedTuple):
    """A kernel weird event as Zeek would log it."""

    name: str
    addl: str | None
    source: str | None
    about_flow: bool        # when not about a connection: the packet's addresses (else about nothing)


def kernel_weird(code: int, detail: int, depth: int, ip_proto: int, about_conn: bool) -> KernelWeird:
    """Name, addl and source of a kernel weird; depth is the tunnels around its packet, about_conn
    whether the kernel raised it about the packet's connection."""
    name = weird_name(code)
    addl = _ADDL.get(code, str(detail) if detail else None)
    source = weird_source(code, ip_proto)
    about_flow = ip_proto != 0 and code not in ABOUT_NO_FLOW
    if code == WeirdCode.TUNNEL_MAX_DEPTH:
        addl, source = None, _DEPTH_SOURCES.get(detail)
        if detail == TunnelType.GTPV1:
            return KernelWeird("tunnel_depth", None, "GTPV1", False)
    if code in _IEEE802_11:
        depth += 1          # raised about the frame inside the GRE tunnel, one level below the GRE packet
    if depth and not about_conn and not name.startswith("cicd_audit_"):
        name += IN_TUNNEL
    return KernelWeird(name, addl, source, about_flow)


def weird_name(code: int) -> str:
    try:
        return WEIRD_NAMES[WeirdCode(code)]
    except (ValueError, KeyError):
        return f"cicd_audit_weird_{code}"


def weird_source(code: int, ip_proto: int) -> str | None:
    """weird.log's `source` for a kernel weird: Zeek's analyzer name, or None where the recorder cannot tell it."""
    if code in (WeirdCode.TRUNCATED_HEADER, WeirdCode.INTERNALLY_TRUNCATED_HEADER):
        return _TRANSPORTS.get(ip_proto)
    return _SOURCES.get(code)
