"""The DNS message model and wire-reading primitives shared by the walk
(message.py) and the per-type RDATA handlers (rdata.py).

``Header``, ``Question``, ``ResourceRecord`` and ``DnsMessage`` are what a walk
produces; ``Cursor`` reads bytes with the exact semantics of Zeek's Extract*
helpers; ``wire_str``/``wire_bytes`` keep names byte-exact (see message.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from cicd_audit.zeeklog.writer import format_addr

# Size of the fixed header (RFC 1035 4.1.1).
HEADER_LEN = 12

# Zeek's name buffers are 513 bytes and it refuses a label that does not fit
# in what is left of 512 (ExtractLabel, DNS_label_len_gt_name_len). TSIG's
# algorithm name gets a 1024-byte buffer.
NAME_BUFFER = 512
TSIG_NAME_BUFFER = 1023

# NetBIOS Name Service port (RFC 1002 4.2.1); NetBIOS names use labels longer
# than 63 bytes and type 33 means NBSTAT there.
NETBIOS_PORT = 137

# Section names, which are also Zeek's ``DNS_AnswerType`` values in spirit.
QUESTION = "question"
ANSWER = "answer"            # Zeek DNS_ANS
AUTHORITY = "authority"      # Zeek DNS_AUTH
ADDITIONAL = "additional"    # Zeek DNS_ADDL
PREREQUISITE = "prerequisite"  # Zeek DNS_PREREQUISITE (RFC 2136 prerequisites)
UPDATE = "update"            # Zeek DNS_UPDATE (RFC 2136 updates)

# RR types with their own code path in Zeek's analyzer.
T_A, T_NS, T_CNAME, T_SOA, T_WKS, T_PTR, T_HINFO, T_MX, T_TXT = 1, 2, 5, 6, 11, 12, 13, 15, 16
T_AAAA, T_LOC, T_NBS, T_SRV, T_NAPTR, T_A6, T_EDNS, T_DS, T_SSHFP = 28, 29, 32, 33, 35, 38, 41, 43, 44
T_RRSIG, T_NSEC, T_DNSKEY, T_NSEC3, T_NSEC3PARAM, T_SVCB, T_HTTPS = 46, 47, 48, 50, 51, 64, 65
T_SPF, T_TKEY, T_TSIG, T_ANY, T_CAA, T_BINDS = 99, 249, 250, 255, 257, 65534

C_NONE, C_ANY = 254, 255

# Zeek events that base/protocols/dns handles. Zeek's parser takes a
# different path for some RR types when nobody handles their event (it then
# skips the RDATA), so the set matters for the cursor, not only for events.
BASE_HANDLED_EVENTS = frozenset({
    "dns_message", "dns_end", "dns_request", "dns_rejected", "dns_unknown_reply",
    "dns_A_reply", "dns_AAAA_reply", "dns_A6_reply", "dns_NS_reply", "dns_CNAME_reply",
    "dns_PTR_reply", "dns_SOA_reply", "dns_WKS_reply", "dns_MX_reply", "dns_TXT_reply",
    "dns_SPF_reply", "dns_SRV_reply", "dns_NAPTR_reply", "dns_RRSIG", "dns_DNSKEY",
    "dns_NSEC", "dns_NSEC3", "dns_NSEC3PARAM", "dns_DS", "dns_BINDS", "dns_SSHFP",
    "dns_LOC", "dns_dynamic_update_pre", "dns_dynamic_update_del",
})


def wire_str(b: bytes) -> str:
    """Wire bytes as a lossless str (UTF-8, undecodable bytes as surrogates)."""
    return bytes(b).decode("utf-8", "surrogateescape")


def wire_bytes(s: str) -> bytes:
    """The exact wire bytes behind a :func:`wire_str` string."""
    return s.encode("utf-8", "surrogateescape")


class DnsParseError(Exception):
    """Zeek stops parsing the message here.

    ``reason`` is a short machine name; ``weird`` is the Zeek weird name when
    Zeek raises one for this failure (``None`` when Zeek fails silently, e.g. a
    SOA RDATA shorter than 20 bytes); ``offset`` is the cursor position;
    ``partial`` is the :class:`DnsMessage` parsed so far (``None`` if the header
    itself was unusable).
    """

    def __init__(self, reason: str, weird: str | None = None, offset: int = 0,
                 partial: DnsMessage | None = None, addl: str = ""):
        super().__init__(f"{reason} at offset {offset}")
        self.reason = reason
        self.weird = weird
        self.offset = offset
        self.partial = partial
        self.addl = addl


@dataclass
class ParseOptions:
    """The Zeek settings that change how a message is walked (init-bare.zeek defaults)."""

    max_queries: int = 25                 # dns_max_queries (0 = no limit)
    max_compression_depth: int = 20       # dns_max_compression_chain_depth
    skip_all_auth: bool = True            # dns_skip_all_auth
    skip_all_addl: bool = True            # dns_skip_all_addl
    skip_auth_servers: frozenset = frozenset()   # dns_skip_auth (server addresses, str)
    skip_addl_servers: frozenset = frozenset()   # dns_skip_addl
    handled_events: frozenset = BASE_HANDLED_EVENTS


@dataclass
class Header:
    """Fixed header fields (RFC 1035 4.1.1; RFC 2136 2.2 renames the counts for UPDATE)."""

    id: int
    qr: bool
    opcode: int
    aa: bool
    tc: bool
    rd: bool
    ra: bool
    z: int          # Zeek's Z: the three bits 0x0070 (Z, AD, CD together)
    ad: bool
    cd: bool
    rcode: int
    qdcount: int    # questions, or zones for UPDATE
    ancount: int    # answers, or prerequisites
    nscount: int    # authority RRs, or updates
    arcount: int

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        flags = (data[2] << 8) | data[3]
        return cls(
            id=(data[0] << 8) | data[1],
            qr=bool(flags & 0x8000),
            opcode=(flags & 0x7800) >> 11,
            aa=bool(flags & 0x0400),
            tc=bool(flags & 0x0200),
            rd=bool(flags & 0x0100),
            ra=bool(flags & 0x0080),
            z=(flags & 0x0070) >> 4,
            ad=bool(flags & 0x0020),
            cd=bool(flags & 0x0010),
            rcode=flags & 0x000F,
            qdcount=(data[4] << 8) | data[5],
            ancount=(data[6] << 8) | data[7],
            nscount=(data[8] << 8) | data[9],
            arcount=(data[10] << 8) | data[11],
        )


@dataclass
class Question:
    """One question entry. ``name`` is lower-cased (Zeek's ``query``), ``original_name`` is not."""

    name: str
    original_name: str
    qtype: int
    qclass: int
    event: str      # dns_request, dns_rejected or dns_query_reply (the Zeek event raised)


@dataclass
class ResourceRecord:
    """One RR as Zeek saw it.

    ``name`` is lower-cased (Zeek's ``ans$query``). ``rdata`` holds the decoded
    fields for the types Zeek decodes (keys per type are listed in
    docs/dns.md). ``event`` is the Zeek event raised for it and handled by the
    loaded scripts, or ``None`` (no event, skipped section, unhandled event).
    """

    section: str
    name: str
    rtype: int
    rclass: int
    ttl: int
    rdlength: int
    rdata: dict = field(default_factory=dict)
    event: str | None = None


@dataclass
class DnsMessage:
    """Result of walking one message."""

    header: Header
    is_netbios: bool = False
    questions: list = field(default_factory=list)
    answers: list = field(default_factory=list)        # answer section, or prerequisites + updates for UPDATE
    authority: list = field(default_factory=list)
    additional: list = field(default_factory=list)
    zone: tuple | None = None                        # UPDATE: (name, type, class) of the zone entry
    weirds: list = field(default_factory=list)          # [(name, addl)] in the order Zeek raises them
    error: DnsParseError | None = None
    violation: str | None = None                     # AnalyzerViolation reason, if any
    limit_reached: bool = False                         # Zeek adds 'X' to conn history
    confirmed: bool = False                             # AnalyzerConfirmation was reached
    ended: bool = False                                 # dns_end was raised

    @property
    def records(self) -> list:
        """All RRs in wire order (the order Zeek raises their events)."""
        return self.answers + self.authority + self.additional

    @property
    def is_dynamic_update(self) -> bool:
        return self.header.opcode == 5 and not self.is_netbios


class Cursor:
    """``data``/``len`` pair with the exact semantics of Zeek's Extract* helpers.

    ``pos`` is the offset in ``buf``; ``left`` is Zeek's ``len``. Short reads
    return 0 without moving, as Zeek's ExtractShort/ExtractLong do.
    """

    __slots__ = ("buf", "pos", "left")

    def __init__(self, buf: bytes, pos: int, left: int):
        self.buf = buf
        self.pos = pos
        self.left = left

    def byte(self) -> int:
        if self.left < 1:
            return 0
        v = self._at(self.pos)
        self.pos += 1
        self.left -= 1
        return v

    def short(self) -> int:
        if self.left < 2:
            return 0
        p, buf = self.pos, self.buf
        if 0 <= p and p + 2 <= len(buf):
            v = (buf[p] << 8) | buf[p + 1]
        else:                       # past the message: Zeek reads zeros there
            v = (self._at(p) << 8) | self._at(p + 1)
        self.pos += 2
        self.left -= 2
        return v

    def long(self) -> int:
        if self.left < 4:
            return 0
        p, buf = self.pos, self.buf
        if 0 <= p and p + 4 <= len(buf):
            v = int.from_bytes(buf[p:p + 4], "big")
        else:                       # past the message: Zeek reads zeros there
            v = 0
            for i in range(4):
                v = (v << 8) | self._at(p + i)
        self.pos += 4
        self.left -= 4
        return v

    def stream(self, n: int) -> bytes:
        """Zeek's ExtractStream: up to ``n`` bytes, fewer if the message ends."""
        n = min(max(n, 0), max(self.left, 0))
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        self.left -= n
        return v

    def octets(self) -> bytes:
        """Zeek's ExtractOctets: a 16-bit length, then that many bytes (clipped)."""
        n = self.short()
        return self.stream(n)

    def skip(self, n: int) -> None:
        self.pos += n
        self.left -= n

    def _at(self, i: int) -> int:
        return self.buf[i] if 0 <= i < len(self.buf) else 0


def decode_netbios_name(name: str) -> str:
    """Zeek's ``decode_netbios_name``: first-level NetBIOS decoding (RFC 1001 14.1).

    Only a 32-character name decodes; each pair of letters A-P (either case)
    is one byte. Decoding stops at the first byte that is not alphanumeric,
    punctuation, space or below 3; the 16th byte (the NetBIOS suffix) is
    dropped and trailing spaces/NULs are removed. Returns "" when the name is
    not an encoded NetBIOS name.
    """
    raw = wire_bytes(name)
    if len(raw) != 32:
        return ""
    out = []
    for i in range(16):
        c0, c1 = raw[2 * i] & ~0x20, raw[2 * i + 1] & ~0x20     # ASCII upper-case
        if not (0x41 <= c0 <= 0x50 and 0x41 <= c1 <= 0x50):
            return ""
        out.append(((c0 - 0x41) << 4) + (c1 - 0x41))
    length = 0
    for b in out:
        # C-locale isalnum/ispunct: printable ASCII except space, plus space and bytes < 3.
        if 0x21 <= b <= 0x7E or b == 0x20 or b < 3:
            length += 1
        else:
            break
    if length == 16:
        length = 15
    while length and out[length - 1] in (0x20, 0x00):
        length -= 1
    return wire_str(bytes(out[:length]))


def ascii_lower(buf: bytearray, start: int, end: int) -> None:
    """Lower-case buf[start:end] in place as C-locale tolower does: ASCII letters only (what
    bytearray.lower does, in C: a tenth of a per-byte loop's time on a 50-byte name)."""
    buf[start:end] = buf[start:end].lower()


def zeek_addr_str(raw16: bytes) -> str:
    """Format 16 address bytes as Zeek does (IPAddr::AsString): IPv4-mapped
    addresses print as IPv4, others with Zeek's inet_ntop rules."""
    return format_addr(ipaddress.IPv6Address(bytes(raw16)))
