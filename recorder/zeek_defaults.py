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
TCP_RESET_DELAY = 5.0            # tcp_reset_delay: RST after FIN
TCP_INACTIVITY_TIMEOUT = 300.0   # tcp_inactivity_timeout (until the handshake is left: UDP's)
TCP_PORT_INACTIVITY_TIMEOUT = 3600.0  # Conn::port_inactivity_timeouts for 21, 22, 23, 513/tcp
UDP_INACTIVITY_TIMEOUT = 60.0    # udp_inactivity_timeout
ICMP_INACTIVITY_TIMEOUT = 60.0   # icmp_inactivity_timeout
UNKNOWN_IP_INACTIVITY_TIMEOUT = 60.0  # unknown_ip_inactivity_timeout
DNS_SESSION_TIMEOUT = 10.0       # dns_session_timeout: UDP DNS connections

TIMER_DEFINES = {
    "CA_TCP_SYN_TIMEOUT_NS": TCP_SYN_TIMEOUT,
    "CA_TCP_PORT_INACTIVITY_NS": TCP_PORT_INACTIVITY_TIMEOUT,
    "CA_TCP_SESSION_TIMER_NS": TCP_SESSION_TIMER,
    "CA_TCP_CONNECTION_LINGER_NS": TCP_CONNECTION_LINGER,
    "CA_TCP_ATTEMPT_DELAY_NS": TCP_ATTEMPT_DELAY,
    "CA_TCP_CLOSE_DELAY_NS": TCP_CLOSE_DELAY,
    "CA_TCP_RESET_DELAY_NS": TCP_RESET_DELAY,
    "CA_TCP_INACTIVITY_NS": TCP_INACTIVITY_TIMEOUT,
    "CA_UDP_INACTIVITY_NS": UDP_INACTIVITY_TIMEOUT,
    "CA_ICMP_INACTIVITY_NS": ICMP_INACTIVITY_TIMEOUT,
    "CA_UNKNOWN_IP_INACTIVITY_NS": UNKNOWN_IP_INACTIVITY_TIMEOUT,
    "CA_DNS_SESSION_TIMEOUT_NS": DNS_SESSION_TIMEOUT,
}

# likely_server_ports with Zeek's default scripts loaded: the ports every
# protocol analyzer registers (Analyzer::register_for_ports) plus explicit
# additions. Zeek uses them to guess the originator of a connection whose
# first packet is not a SYN. (tcp, udp) port numbers.
LIKELY_SERVER_PORTS_TCP = frozenset({
    21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 465, 502, 514, 563, 585, 587,
    614, 631, 636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306, 3389, 5222,
    5223, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000,
})
LIKELY_SERVER_PORTS_UDP = frozenset({
    53, 67, 88, 123, 137, 161, 162, 389, 443, 514, 1812, 2123, 2152, 3389, 3544, 4011, 4754,
    4789, 5060, 5072, 5353, 5355, 6081, 20000,
})

# DNS analyzer ports (Zeek's DNS scripts): UDP/TCP 53, NetBIOS-NS 137, mDNS 5353, LLMNR 5355.
DNS_PORTS = frozenset({53, 137, 5353, 5355})
