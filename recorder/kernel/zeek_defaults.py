"""Zeek's defaults that shape conn.log, in one place (scripts/base/init-bare.zeek, Zeek 9.1).

These reach the BPF program as -D flags, so kernel and documentation agree.
"""

from __future__ import annotations

# Timers, seconds (init-bare.zeek).
TCP_SYN_TIMEOUT = 5.0            # tcp_SYN_timeout: first tcp_session_timer check after creation
TCP_SESSION_TIMER = 6.0          # tcp_session_timer: re-check of half-closed connections
TCP_CONNECTION_LINGER = 5.0      # tcp_connection_linger: quiet time before a half-close ends
TCP_ATTEMPT_DELAY = 5.0          # tcp_attempt_delay: unanswered SYN
TCP_CLOSE_DELAY = 5.0            # tcp_close_delay: after both sides closed
TCP_INACTIVITY_TIMEOUT = 300.0   # tcp_inactivity_timeout (until the handshake is left: UDP's)
TCP_PORT_INACTIVITY_TIMEOUT = 3600.0  # Conn::port_inactivity_timeouts for 21, 22, 23, 513/tcp
UDP_INACTIVITY_TIMEOUT = 60.0    # udp_inactivity_timeout
ICMP_INACTIVITY_TIMEOUT = 60.0   # icmp_inactivity_timeout
UNKNOWN_IP_INACTIVITY_TIMEOUT = 60.0  # unknown_ip_inactivity_timeout
DNS_SESSION_TIMEOUT = 10.0       # dns_session_timeout: UDP DNS connections
TUNNEL_MAX_DEPTH = 4             # Tunnel::max_depth, also the most the program opens (bpf/tunnel.h)

TIMER_DEFINES = {
    "CA_TCP_SYN_TIMEOUT_NS": TCP_SYN_TIMEOUT,
    "CA_TCP_PORT_INACTIVITY_NS": TCP_PORT_INACTIVITY_TIMEOUT,
    "CA_TCP_SESSION_TIMER_NS": TCP_SESSION_TIMER,
    "CA_TCP_CONNECTION_LINGER_NS": TCP_CONNECTION_LINGER,
    "CA_TCP_ATTEMPT_DELAY_NS": TCP_ATTEMPT_DELAY,
    "CA_TCP_CLOSE_DELAY_NS": TCP_CLOSE_DELAY,
    "CA_TCP_INACTIVITY_NS": TCP_INACTIVITY_TIMEOUT,
    "CA_UDP_INACTIVITY_NS": UDP_INACTIVITY_TIMEOUT,
    "CA_ICMP_INACTIVITY_NS": ICMP_INACTIVITY_TIMEOUT,
    "CA_UNKNOWN_IP_INACTIVITY_NS": UNKNOWN_IP_INACTIVITY_TIMEOUT,
    "CA_DNS_SESSION_TIMEOUT_NS": DNS_SESSION_TIMEOUT,
}

# likely_server_ports is filled by the scripts Zeek loads: each protocol
# analyzer's server ports (Analyzer::register_for_ports in
# scripts/base/protocols/*/main.zeek) and the tunnel packet analyzers' ports
# (scripts/base/packet-protocols/*/main.zeek, loaded even with -b). Zeek uses
# them to guess the originator of a connection whose first packet is not a
# plain SYN. Keyed by the name of the scripts directory; (port, "tcp"|"udp").
ANALYZER_SERVER_PORTS: dict[str, frozenset[tuple[int, str]]] = {
    name: frozenset((int(p), t) for p, t in (x.split("/") for x in ports.split()))
    for name, ports in {
        "dce-rpc": "135/tcp",
        "dhcp": "67/udp 4011/udp",                   # 68/udp is registered as a non-server port
        "dnp3": "20000/tcp 20000/udp",
        "dns": "53/udp 53/tcp 137/udp 5353/udp 5355/udp",
        "finger": "79/tcp",
        "ftp": "21/tcp 2811/tcp",
        "http": "80/tcp 81/tcp 631/tcp 1080/tcp 3128/tcp 8000/tcp 8080/tcp 8888/tcp",
        "imap": "143/tcp",
        "irc": "6666/tcp 6667/tcp 6668/tcp 6669/tcp",
        "krb": "88/tcp 88/udp",
        "ldap": "389/tcp 3268/tcp 389/udp",
        "modbus": "502/tcp",
        "mqtt": "1883/tcp",
        "mysql": "1434/tcp 3306/tcp",
        "ntp": "123/udp",
        "postgresql": "5432/tcp",
        "quic": "443/udp",                           # DNS-over-QUIC ports are non-server ports
        "radius": "1812/udp",
        "rdp": "3389/tcp 3389/udp",
        "redis": "6379/tcp",
        "sip": "5060/udp",
        "smb": "139/tcp 445/tcp",
        "smtp": "25/tcp 587/tcp",
        "snmp": "161/udp 162/udp",
        "socks": "1080/tcp",
        "ssh": "22/tcp",
        "ssl": "443/tcp 465/tcp 563/tcp 585/tcp 614/tcp 636/tcp 989/tcp 990/tcp 992/tcp 993/tcp "
               "995/tcp 5223/tcp 443/udp",           # 443/udp: DTLS
        "syslog": "514/udp 514/tcp",
        "xmpp": "5222/tcp 5269/tcp",
    }.items()
}
# Protocol scripts that register no ports (their analyzers attach by DPD signature or from another
# analyzer): loading them adds nothing to likely_server_ports, but a configuration may name them.
ANALYZERS_WITHOUT_SERVER_PORTS = frozenset({"conn", "ntlm", "pop3", "rfb", "tunnels", "websocket"})
# Tunnel packet analyzers (gtpv1, teredo, gre, vxlan, ayiya, geneve): in every configuration.
PACKET_PROTOCOL_SERVER_PORTS = frozenset({
    (2152, "udp"), (2123, "udp"), (3544, "udp"), (4754, "udp"), (4789, "udp"), (5072, "udp"), (6081, "udp"),
})
DEFAULT_LIKELY_SERVER_PORTS = PACKET_PROTOCOL_SERVER_PORTS.union(*ANALYZER_SERVER_PORTS.values())

LIKELY_SERVER_PORTS_TCP = frozenset(p for p, t in DEFAULT_LIKELY_SERVER_PORTS if t == "tcp")
LIKELY_SERVER_PORTS_UDP = frozenset(p for p, t in DEFAULT_LIKELY_SERVER_PORTS if t == "udp")


class LikelyServerPortsError(ValueError):
    pass


def parse_likely_server_ports(spec: str) -> frozenset[tuple[int, str]]:
    """likely_server_ports from a comma-separated list of items:
    ``default`` (Zeek's default scripts), ``bare`` (``zeek -b``: only the
    tunnel packet analyzers' ports), a protocol name whose scripts are loaded
    (``http``, ``dns``, ... as in ``scripts/base/protocols/``), or a port
    (``40190/udp``, as in ``redef likely_server_ports += {...}``).
    ``bare,http`` is ``zeek -b`` with ``base/protocols/http`` loaded."""
    ports: set[tuple[int, str]] = set()
    items = [item.strip().lower() for item in spec.split(",") if item.strip()]
    if not items:
        raise LikelyServerPortsError("empty list")
    for item in items:
        if item == "default":
            ports |= DEFAULT_LIKELY_SERVER_PORTS
        elif item == "bare":
            ports |= PACKET_PROTOCOL_SERVER_PORTS
        elif item in ANALYZER_SERVER_PORTS:
            ports |= ANALYZER_SERVER_PORTS[item]
        elif item in ANALYZERS_WITHOUT_SERVER_PORTS:
            pass
        elif "/" in item:
            number, _, transport = item.partition("/")
            if not number.isdigit() or not 0 <= int(number) <= 65535 or transport not in ("tcp", "udp"):
                raise LikelyServerPortsError(f"{item!r} is not a port like 8080/tcp or 40190/udp")
            ports.add((int(number), transport))
        else:
            raise LikelyServerPortsError(
                f"{item!r} is not default, bare, a port (8080/tcp) or one of: "
                f"{', '.join(sorted(ANALYZER_SERVER_PORTS.keys() | ANALYZERS_WITHOUT_SERVER_PORTS))}")
    return frozenset(ports)

