"""Python's one mirror of bpf/cicd_audit.h: the structs that cross the ring buffer and the policy maps.

tests/test_abi_layout.py compiles a probe against the C header and compares
every size and offset with these definitions, so a change on one side that is
not made on the other fails the tests instead of corrupting events.
"""

from __future__ import annotations

import ctypes
import enum

c_u8, c_u16, c_u32, c_u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64

HISTORY_MAX = 64
DNS_PAYLOAD_MAX = 4096
SWEEP_KEYS_MAX = 32
SWEEP_UNFINISHED = 100      # ca_sweep's verdict: the request's tail calls stopped short
COMM_LEN = 16
NAME_MAX = 256
POLICY_PORTS_MAX = 6
FRAGMENT_MAX = 16384
MARK_PADDED = 1 << 31       # pcap replay: the mark holds a frame's length, padded to what a test run takes
EXEC_PATH_MAX = 256
EXEC_PATH_CUT = 1 << 0
PAIR_TUNNEL_ID = 1 << 63     # an IP tunnel's id: its address pair's, not a connection's


class EventType(enum.IntEnum):
    CONN_END = 1
    DNS = 2
    WEIRD = 3
    PROCESS = 4
    BLOCKED = 5
    FRAGMENT = 6
    TUNNEL = 7
    CONN_START = 8


class BlockReason(enum.IntEnum):
    ADDRESS = 1
    DNS_NAME = 2


class BlockWhere(enum.IntEnum):
    CONNECT = 1
    TC = 2


class EndReason(enum.IntEnum):
    TIMEOUT = 1
    REUSED = 2
    DRAIN = 3


class TcpState(enum.IntEnum):
    """Zeek's TCP endpoint states (UDP and others use INACTIVE=0 / ACTIVE=1)."""

    INACTIVE = 0
    SYN_SENT = 1
    SYN_ACK_SENT = 2
    PARTIAL = 3
    ESTABLISHED = 4
    CLOSED = 5
    RESET = 6


UDP_ACTIVE = 1


class WeirdCode(enum.IntEnum):
    TRUNCATED_IP = 1
    BAD_IP_CHECKSUM = 2
    TRUNCATED_HEADER = 3
    BAD_TCP_CHECKSUM = 4
    BAD_UDP_CHECKSUM = 5
    BAD_ICMP_CHECKSUM = 6
    IP_FRAGMENT = 7
    UNKNOWN_IP_VERSION = 8
    TOO_MANY_EXT_HEADERS = 9
    DNS_TRUNCATED = 10
    IP_HDR_LEN_ZERO = 11
    TUNNEL_MAX_DEPTH = 12
    TRUNCATED_GRE = 13
    GRE_UNSUPPORTED = 14
    TUNNEL_MAX_CHANGES = 15
    BAD_TCP_HEADER_LEN = 16
    TEREDO_BUBBLE_WITH_PAYLOAD = 17
    INVALID_IP_HEADER_SIZE = 18
    IPV4_MIN_HEADER_SIZE = 19
    VXLAN_EMPTY_PACKET = 20
    GENEVE_EMPTY_PACKET = 21
    GENEVE_INVALID_VERSION = 22
    TRUNCATED_802_11_HEADER = 23
    TRUNCATED_802_11_LLC_HEADER = 24
    TRUNCATED_802_11_AMSDU_HEADER = 25
    TRUNCATED_802_11_AMSDU_PACKET = 26
    INVALID_802_11_AMSDU_INNER_PACKET = 27
    AMSDU_REST_UNREAD = 28
    TRUNCATED_ETHERNET_FRAME = 29
    UNDEFINED_ETHER_TYPE = 30
    TRUNCATED_VLAN_HEADER = 31
    UNDEFINED_VLAN_PROTOCOL = 32
    TRIPLE_TAGGED_VLAN = 33
    TRUNCATED_IP_LEN = 34
    TRUNCATED_INNER_IP = 35
    INNER_IP_PAYLOAD_LENGTH_MISMATCH = 36
    INVALID_INNER_IP_VERSION = 37
    INTERNALLY_TRUNCATED_HEADER = 38
    IP_INTERNALLY_TRUNCATED_HEADER = 39


WEIRD_MAX = 40


class Stat(enum.IntEnum):
    PACKETS = 0
    IP_BYTES = 1
    NON_IP = 2
    PARSE_ERRORS = 3
    CONN_TABLE_FULL = 4
    RB_DROP_CONN = 5
    RB_DROP_DNS = 6
    RB_DROP_WEIRD = 7
    WEIRDS_SUPPRESSED = 8
    CONNS_CREATED = 9
    DNS_MESSAGES = 10
    BAD_CHECKSUMS = 11
    BLOCKED_CONNECTS = 12
    BLOCKED_PACKETS = 13
    BLOCKED_DNS = 14
    ADDRS_LEARNT = 15
    RB_DROP_BLOCKED = 16
    RB_DROP_PROCESS = 17
    ALLOW_TABLE_FULL = 18
    RB_DROP_FRAGMENT = 19
    FRAGMENTS = 20
    RB_DROP_TUNNEL = 21
    CONNS6_CREATED = 22
    RB_DROP_CONN_START = 23
    TCP_HOLES_MERGED = 24


STAT_MAX = 25


def stat_key(stat: Stat) -> str:
    """A counter's key in CaptureProgram.stats(): its name, lower case. Readers name the counter
    through Stat (a renamed member fails at import) rather than spelling the key."""
    return stat.name.lower()

# Endpoint flags (CA_EP_*) and connection flags (CA_CONN_*).
EP_SEQ_VALID = 1 << 0
EP_SAW_FIN = 1 << 2
EP_DID_CLOSE = 1 << 6
CONN_DNS = 1 << 0
CONN_FLIPPED = 1 << 1
CONN_BLOCKED = 1 << 11
CONN_DNS_BLOCKED = 1 << 12
CONN_IN_JOB = 1 << 13
CONN_TUNNEL = 1 << 14
CONN_IP_TUNNEL = 1 << 15
CONN_UDP_TUNNEL = 1 << 16
CONN_TEREDO = 1 << 17
CONN_AYIYA = 1 << 18

DNS_PORT = 53

# Blocking mode: jobs judged at once (job_scope slots); a job is named by its slot + 1.
JOB_SLOTS = 8


class ScopeMode(enum.IntEnum):
    EMPTY = 0
    CGROUP = 1
    HOST = 2


class EventHeader(ctypes.Structure):
    _fields_ = [("type", c_u32), ("size", c_u32), ("ts_ns", c_u64)]


class ConnKey(ctypes.Structure):
    _fields_ = [("addr", (c_u8 * 16) * 2), ("port", c_u16 * 2), ("ip_proto", c_u8), ("pad", c_u8 * 3)]


class ConnKey4(ctypes.Structure):
    """The conns4 map's key: an IPv4 connection's ConnKey without the IPv4-mapped prefix."""

    _fields_ = [("addr", c_u32 * 2), ("port", c_u16 * 2), ("ip_proto", c_u8), ("pad", c_u8 * 3)]


V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"      # ::ffff:0:0/96: how keys hold an IPv4 address


def v4_mapped(addr: bytes) -> bytes:
    """A 4- or 16-byte address as the 16 bytes keys hold (IPv4 mapped into IPv6)."""
    return addr if len(addr) == 16 else V4_MAPPED_PREFIX + addr


def conn_key_from_v4(raw: bytes) -> bytes:
    """A conns4 key (raw bytes) as the ConnKey bytes every other part of the recorder uses.

    By slicing: the addresses are network-order bytes in both, and ports, protocol and
    padding follow them alike (the sweep converts every IPv4 key once a second)."""
    return V4_MAPPED_PREFIX + raw[0:4] + V4_MAPPED_PREFIX + raw[4:8] + raw[8:16]


class Endpoint(ctypes.Structure):
    _fields_ = [
        ("pkts", c_u64), ("ip_bytes", c_u64), ("payload_bytes", c_u64), ("gap_bytes", c_u64),
        ("start_seq", c_u32), ("last_seq", c_u32), ("seq_wraps", c_u32), ("ack_seq", c_u32), ("ack_wraps", c_u32),
        ("hist_last_syn", c_u32), ("hist_last_fin", c_u32), ("hist_last_rst", c_u32), ("fin_seq", c_u32),
        ("reassem_seq", c_u32), ("trim_seq", c_u32), ("ooo_seq", c_u32), ("ooo_upper", c_u32),
        ("checksum_errors", c_u32), ("rexmits", c_u32), ("zero_windows", c_u32), ("gaps", c_u32),
        ("flags", c_u16), ("state", c_u8), ("prev_state", c_u8),
    ]


class Process(ctypes.Structure):
    _fields_ = [("tgid", c_u32), ("pid", c_u32), ("cgroup_id", c_u64), ("flags", c_u32), ("job", c_u32),
                ("comm", ctypes.c_char * COMM_LEN)]


class Conn(ctypes.Structure):
    _fields_ = [
        ("id", c_u64), ("first_ns", c_u64), ("last_ns", c_u64),
        ("attempt_deadline", c_u64), ("close_deadline", c_u64),
        ("expire_deadline", c_u64),
        ("ep", Endpoint * 2), ("history_seen", c_u64),
        ("orig_slot", c_u8), ("history_len", c_u8),
        ("tunnel_current", c_u8), ("tunnel_changes", c_u8), ("flags", c_u32),
        ("history", ctypes.c_char * HISTORY_MAX),
        ("proc", Process),
        ("tunnel_parents", c_u64 * 2),
    ]


class ConnEndEvent(ctypes.Structure):
    _fields_ = [("hdr", EventHeader), ("key", ConnKey), ("conn", Conn), ("reason", c_u32), ("pad", c_u32)]


class DnsEvent(ctypes.Structure):
    _fields_ = [
        ("hdr", EventHeader), ("key", ConnKey), ("conn_id", c_u64), ("owner_cgroup_id", c_u64),
        ("orig_slot", c_u8), ("from_orig", c_u8), ("history_len", c_u8), ("pad", c_u8),
        ("tcp_seq", c_u32), ("payload_len", c_u32), ("captured_len", c_u32),
        ("payload", c_u8 * DNS_PAYLOAD_MAX),
    ]


class DnsEventHead(ctypes.Structure):
    """DnsEvent up to its payload: what a record is decoded into (the payload is sliced from the
    record itself, not copied into a struct of DNS_PAYLOAD_MAX bytes first)."""

    _fields_ = DnsEvent._fields_[:-1]


assert ctypes.sizeof(DnsEventHead) == DnsEvent.payload.offset


class FragmentEvent(ctypes.Structure):
    _fields_ = [
        ("hdr", EventHeader), ("l3_off", c_u32), ("captured_len", c_u32),
        ("egress", c_u8), ("pad", c_u8 * 7), ("sock_cookie", c_u64), ("frame", c_u8 * FRAGMENT_MAX),
    ]


class Stage(enum.IntEnum):
    """enum ca_stage: a tail-called program's slot in the stages array."""

    PACKET = 1
    TCP = 2
    EGRESS = 3
    DNS_POLICY = 4
    DNS_NAME = 5
    DNS_LEARN = 6
    DECAP = 7
    SWEEP = 8


STAGE_MAX = 9


class TunnelType(enum.IntEnum):
    IP = 1
    GRE = 2
    VXLAN = 3
    GENEVE = 4
    GTPV1 = 5
    AYIYA = 6
    TEREDO = 7


class ConnStartEvent(ctypes.Structure):
    _fields_ = [("hdr", EventHeader), ("key", ConnKey), ("due_ns", c_u64)]


class TunnelEvent(ctypes.Structure):
    _fields_ = [("hdr", EventHeader), ("key", ConnKey), ("tunnel_id", c_u64), ("orig_slot", c_u8),
                ("type", c_u8), ("pad", c_u8 * 6)]


class WeirdEvent(ctypes.Structure):
    _fields_ = [("hdr", EventHeader), ("key", ConnKey), ("conn_id", c_u64), ("owner_cgroup_id", c_u64),
                ("code", c_u16), ("orig_slot", c_u8), ("depth", c_u8), ("detail", c_u32)]


class ProcessEvent(ctypes.Structure):
    _fields_ = [("hdr", EventHeader), ("proc", Process)]


class ExecPath(ctypes.Structure):        # the exec_paths map's value
    _fields_ = [("len", c_u32), ("flags", c_u32), ("path", ctypes.c_char * EXEC_PATH_MAX)]


class ExecLayout(ctypes.Structure):      # the exec_layout map's one value
    _fields_ = [("binprm_interp", c_u32), ("task_pid", c_u32), ("task_tgid", c_u32), ("pad", c_u32)]


class SockLayout(ctypes.Structure):      # the sock_layout map's one value
    _fields_ = [("sock_cookie", c_u32), ("sock_protocol", c_u32), ("inet_sport", c_u32), ("pad", c_u32)]


class BlockedEvent(ctypes.Structure):
    _fields_ = [
        ("hdr", EventHeader), ("key", ConnKey), ("conn_id", c_u64), ("proc", Process),
        ("reason", c_u32), ("where", c_u8), ("src_slot", c_u8), ("name_len", c_u16),
        ("name", ctypes.c_char * NAME_MAX),
    ]


class PortSet(ctypes.Structure):
    _fields_ = [("any", c_u8), ("count", c_u8), ("ports", c_u16 * POLICY_PORTS_MAX)]


class CidrKey(ctypes.Structure):
    _fields_ = [("prefixlen", c_u32), ("job", c_u8), ("addr", c_u8 * 16), ("pad", c_u8 * 3)]


class NameKey(ctypes.Structure):
    _fields_ = [("hash", c_u64), ("job", c_u32), ("pad", c_u32)]


class NameRule(ctypes.Structure):
    _fields_ = [("exact", PortSet), ("under", PortSet), ("len", c_u16), ("pad", c_u16),
                ("name", ctypes.c_char * NAME_MAX)]


class LearntKey(ctypes.Structure):
    _fields_ = [("addr", c_u8 * 16), ("port", c_u16), ("job", c_u8), ("pad", c_u8)]


class LearntAddr(ctypes.Structure):
    _fields_ = [("expires_ns", c_u64)]


class FlowKey(ctypes.Structure):
    _fields_ = [("daddr", c_u8 * 16), ("dport", c_u16), ("sport", c_u16), ("ip_proto", c_u8), ("pad", c_u8 * 3)]


class DnsEndpoint(ctypes.Structure):
    _fields_ = [("addr", c_u8 * 16), ("port", c_u16), ("pad", c_u16)]


class DnsRedirect(ctypes.Structure):
    _fields_ = [("stub", DnsEndpoint), ("upstream", DnsEndpoint)]


class JobScope(ctypes.Structure):
    _fields_ = [("cgroup_id", c_u64), ("level", c_u32), ("mode", c_u32)]


class SweepRequest(ctypes.Structure):
    _fields_ = [("count", c_u32), ("drain", c_u32), ("v4", c_u32), ("cursor", c_u32),
                ("keys", ConnKey * SWEEP_KEYS_MAX)]


# Every struct the layout test checks, by its C name.
MIRRORED_STRUCTS = {
    "ca_event_header": EventHeader,
    "ca_conn_key": ConnKey,
    "ca_conn_key4": ConnKey4,
    "ca_endpoint": Endpoint,
    "ca_conn": Conn,
    "ca_conn_end_event": ConnEndEvent,
    "ca_dns_event": DnsEvent,
    "ca_weird_event": WeirdEvent,
    "ca_fragment_event": FragmentEvent,
    "ca_tunnel_event": TunnelEvent,
    "ca_conn_start_event": ConnStartEvent,
    "ca_sweep_request": SweepRequest,
    "ca_process": Process,
    "ca_process_event": ProcessEvent,
    "ca_exec_path": ExecPath,
    "ca_exec_layout": ExecLayout,
    "ca_sock_layout": SockLayout,
    "ca_blocked_event": BlockedEvent,
    "ca_port_set": PortSet,
    "ca_cidr_key": CidrKey,
    "ca_name_key": NameKey,
    "ca_name_rule": NameRule,
    "ca_learnt_key": LearntKey,
    "ca_learnt_addr": LearntAddr,
    "ca_flow_key": FlowKey,
    "ca_job_scope": JobScope,
    "ca_dns_endpoint": DnsEndpoint,
    "ca_dns_redirect": DnsRedirect,
}
