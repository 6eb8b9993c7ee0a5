"""DNS wire-format parser that walks a message exactly as Zeek 9.1's DNS analyzer does.

dns.log must match Zeek's byte for byte, so this is not a "correct" RFC 1035
parser: it reproduces the walk of Zeek's ``DNS_Interpreter`` (how far the
cursor moves for each RR type, where a malformed RR stops the walk, which
sections are parsed at all, which Zeek events would be raised and with what
values). Where Zeek deviates from the RFCs, so does this module, and the
docstrings say so. docs/dns.md lists the rules.

Public API
----------
``parse_message(data, ...) -> DnsMessage``
    Parses one DNS message; raises :class:`DnsParseError` when Zeek would stop
    parsing it. The error carries ``weird`` (Zeek's weird name when Zeek
    reports one, e.g. ``DNS_truncated_RR_rdlength_lt_len``) and ``partial``
    (everything parsed before the failure, which Zeek still acts on).
``interpret(data, ...) -> DnsMessage``
    The same walk without raising: failures are in ``message.error``.
``decode_netbios_name(name) -> str``
    Zeek's ``decode_netbios_name`` (RFC 1001 14.1 first-level decoding).

Strings (names, TXT data) are the wire bytes decoded with
``wire_str`` (UTF-8 with ``surrogateescape``): valid UTF-8 reads naturally and
any other byte becomes a lone surrogate, so ``wire_bytes(s)`` (i.e.
``s.encode("utf-8", "surrogateescape")``) gives back exactly the bytes Zeek
holds. Zeek's log writer escapes bytes, so the writer must work on those.

Nothing here raises anything but :class:`DnsParseError` for any input; every
read is bounds-checked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Optional

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

# DNSSEC algorithm numbers Zeek accepts silently (RFC 8624 / IANA registry);
# others raise a DNSSEC_*_ZoneSignAlgo weird.
_DNSSEC_ALGOS_OK = {2, 3, 4, 5, 6, 7, 8, 10, 12, 13, 14, 15, 16}
_DNSSEC_ALGO_WEIRD = {1: "NotRecommended", 252: "Indirect", 253: "PrivateDNS", 254: "PrivateOID"}

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

    def __init__(self, reason: str, weird: Optional[str] = None, offset: int = 0,
                 partial: "Optional[DnsMessage]" = None, addl: str = ""):
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
    def from_bytes(cls, data: bytes) -> "Header":
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
    event: Optional[str] = None


@dataclass
class DnsMessage:
    """Result of walking one message."""

    header: Header
    is_netbios: bool = False
    questions: list = field(default_factory=list)
    answers: list = field(default_factory=list)        # answer section, or prerequisites + updates for UPDATE
    authority: list = field(default_factory=list)
    additional: list = field(default_factory=list)
    zone: Optional[tuple] = None                        # UPDATE: (name, type, class) of the zone entry
    weirds: list = field(default_factory=list)          # [(name, addl)] in the order Zeek raises them
    error: Optional[DnsParseError] = None
    violation: Optional[str] = None                     # AnalyzerViolation reason, if any
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


class _Cursor:
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
        v = (self._at(self.pos) << 8) | self._at(self.pos + 1)
        self.pos += 2
        self.left -= 2
        return v

    def long(self) -> int:
        if self.left < 4:
            return 0
        v = 0
        for i in range(4):
            v = (v << 8) | self._at(self.pos + i)
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


def _lower(buf: bytearray, start: int, end: int) -> None:
    # C-locale tolower: ASCII letters only.
    for i in range(start, end):
        c = buf[i]
        if 0x41 <= c <= 0x5A:
            buf[i] = c + 32


class _Interpreter:
    """One walk over one message (Zeek's DNS_Interpreter::ParseMessage)."""

    def __init__(self, data: bytes, msg: DnsMessage, resp_port: Optional[int],
                 transport: str, server: Optional[str], opts: ParseOptions):
        self.data = data
        self.msg = msg
        self.resp_port = resp_port
        self.transport = transport
        self.server = server
        self.opts = opts
        self.handled = opts.handled_events
        self.skip_event = False
        self.section = QUESTION
        self.zclass = 0

    # -- reporting -------------------------------------------------------
    def weird(self, name: str, addl: str = "") -> None:
        self.msg.weirds.append((name, addl))

    def fail(self, reason: str, weird: Optional[str], cur: Optional[_Cursor], addl: str = "") -> bool:
        if weird:
            self.weird(weird, addl)
        if self.msg.error is None:
            self.msg.error = DnsParseError(reason, weird, cur.pos if cur else 0, self.msg, addl)
        return False

    def wants(self, event: str) -> bool:
        return event in self.handled and not self.skip_event

    # -- names -----------------------------------------------------------
    def extract_name(self, cur: _Cursor, buf: bytearray, size: int, downcase: bool = True,
                     depth: int = 0) -> bool:
        """Zeek's ExtractName: append labels to ``buf`` (shared across pointer hops).

        ``size`` is the name buffer size; what is left of it is always
        ``size - len(buf)``, as in Zeek (a removed trailing dot gives its byte
        back). Returns False on a parse error (``msg.error`` is set).
        """
        if depth > self.opts.max_compression_depth:
            self.weird("DNS_max_compression_chain_depth_exceeded", str(depth))
            self.msg.limit_reached = True
            return True            # Zeek keeps what it has and carries on
        start = len(buf)
        while True:
            status = self.extract_label(cur, buf, size, depth)
            if status is None:
                return False
            if status:
                break
        n = len(buf) - start
        if n >= 255:
            self.weird("DNS_NAME_too_long")
        if n >= 2 and buf[-1] == 0x2E:
            del buf[-1]
        if downcase:
            _lower(buf, start, len(buf))
        return True

    def extract_label(self, cur: _Cursor, buf: bytearray, size: int, depth: int):
        """Zeek's ExtractLabel: True at the end of the name, False to go on, None on error."""
        if cur.left <= 0:
            self.fail("name_past_end", "dns_invalid_name", cur)
            return None
        here = cur.pos
        label_len = cur._at(cur.pos)
        cur.pos += 1
        cur.left -= 1
        if label_len == 0:
            return True
        if (label_len & 0xC0) == 0xC0:
            # Compression pointer (RFC 1035 4.1.4).
            if cur.left <= 0:
                self.fail("pointer_past_end", "dns_invalid_name", cur)
                return None
            offset = ((label_len & 0x3F) << 8) | cur._at(cur.pos)
            cur.pos += 1
            cur.left -= 1
            if offset >= here:
                # Zeek follows only backward pointers, and only into the bytes
                # before the pointer, so every loop ends here.
                self.fail("forward_compression_pointer", "DNS_label_forward_compress_offset", cur)
                return None
            sub = _Cursor(self.data, offset, here - offset)
            if not self.extract_name(sub, buf, size, True, depth + 1):
                return None
            return True
        # 0x40 and 0x80 prefixes (RFC 6891 5) are plain lengths of 64-191 to Zeek.
        if label_len > cur.left:
            self.fail("label_past_end", "DNS_label_len_gt_pkt", cur)
            cur.pos += cur.left
            cur.left = 0
            return None
        if label_len > 63 and self.resp_port != NETBIOS_PORT:
            self.fail("label_too_long", "DNS_label_too_long", cur)
            return None
        if label_len >= size - len(buf):
            self.fail("name_too_long", "DNS_label_len_gt_name_len", cur)
            return None
        buf += self.data[cur.pos:cur.pos + label_len]
        buf.append(0x2E)
        cur.pos += label_len
        cur.left -= label_len
        return False

    def name(self, cur: _Cursor, downcase: bool = True, size: int = NAME_BUFFER) -> Optional[str]:
        buf = bytearray()
        if not self.extract_name(cur, buf, size, downcase):
            return None
        return wire_str(buf)

    # -- message ---------------------------------------------------------
    def run(self) -> None:
        msg, opts, h = self.msg, self.opts, self.msg.header
        cur = _Cursor(self.data, HEADER_LEN, len(self.data) - HEADER_LEN)

        if opts.max_queries > 0 and h.qdcount > opts.max_queries:
            msg.violation = "DNS_Conn_count_too_large"
            self.weird("DNS_Conn_count_too_large", f"{h.qdcount} > {opts.max_queries}")
            msg.limit_reached = True
            msg.error = DnsParseError("too_many_questions", "DNS_Conn_count_too_large", cur.pos, msg)
            msg.ended = True
            return

        if msg.is_dynamic_update:
            if h.qdcount != 1:
                self.fail("update_zone_count", "DNS_DU_invalid_zone_count", cur, str(h.qdcount))
                msg.ended = True
                return
            self.section = QUESTION
            hdr = self.answer_header(cur)
            if hdr is None:
                msg.ended = True
                return
            zname, ztype, zclass = hdr
            msg.zone = hdr
            if ztype != T_SOA:
                # Zeek returns here without raising dns_end.
                self.fail("update_zone_not_soa", "DNS_DU_incorrect_zone_type", cur)
                return
            self.zclass = zclass
            if not self.answers(cur, h.ancount, PREREQUISITE, msg.answers):
                msg.ended = True
                return
            if not self.answers(cur, h.nscount, UPDATE, msg.answers):
                msg.ended = True
                return
        else:
            n = h.qdcount
            while n > 0 and self.question(cur):
                n -= 1
            if n:
                msg.ended = True
                return
            if not self.answers(cur, h.ancount, ANSWER, msg.answers):
                msg.ended = True
                return

        msg.confirmed = True
        skip_auth = opts.skip_all_auth
        skip_addl = opts.skip_all_addl
        if h.ancount > 0:
            skip_auth = skip_auth or h.nscount == 0 or self.server in opts.skip_auth_servers
            skip_addl = skip_addl or h.arcount == 0 or self.server in opts.skip_addl_servers
        if skip_auth and skip_addl:
            msg.ended = True
            return
        if not msg.is_dynamic_update:
            self.skip_event = skip_auth
            if not self.answers(cur, h.nscount, AUTHORITY, msg.authority):
                msg.ended = True
                return
        if skip_addl:
            msg.ended = True
            return
        self.skip_event = skip_addl
        self.answers(cur, h.arcount, ADDITIONAL, msg.additional)
        msg.ended = True

    def question(self, cur: _Cursor) -> bool:
        buf = bytearray()
        if not self.extract_name(cur, buf, NAME_BUFFER, downcase=False):
            return False
        if cur.left < 4:
            return self.fail("question_too_short", "DNS_truncated_quest_too_short", cur)
        h = self.msg.header
        if not h.qr:
            event = "dns_request"
        elif h.ancount == 0 and h.nscount == 0 and h.arcount == 0:
            event = "dns_rejected"      # a reply with no RRs at all
        else:
            event = "dns_query_reply"
        original = wire_str(buf)
        _lower(buf, 0, len(buf))
        qtype = cur.short()
        qclass = cur.short()
        self.msg.questions.append(Question(wire_str(buf), original, qtype, qclass, event))
        return True

    def answers(self, cur: _Cursor, n: int, section: str, out: list) -> bool:
        self.section = section
        while n > 0 and self.answer(cur, out):
            n -= 1
        return n == 0

    def answer_header(self, cur: _Cursor):
        name = self.name(cur)
        if name is None:
            return None
        if cur.left < 4:
            self.fail("rr_header_too_short", "DNS_truncated_ans_too_short", cur)
            return None
        return name, cur.short(), cur.short()

    def answer(self, cur: _Cursor, out: list) -> bool:
        hdr = self.answer_header(cur)
        if hdr is None:
            return False
        name, rtype, rclass = hdr
        ttl = cur.long()
        rdlength = cur.short()
        rr = ResourceRecord(self.section, name, rtype, rclass, ttl, rdlength)
        if rdlength > cur.left:
            return self.fail("rdlength_past_end", "DNS_truncated_RR_rdlength_lt_len", cur)

        if self.msg.is_dynamic_update:
            if self.section == UPDATE:
                if rclass == C_ANY and ttl == 0 and rdlength == 0:
                    if self.wants("dns_dynamic_update_del"):
                        rr.event = "dns_dynamic_update_del"
                    out.append(rr)
                    return True
                if not ((rclass == C_NONE and ttl == 0) or rclass == self.zclass):
                    # Zeek returns without consuming the RDATA.
                    self.weird("DNS_dynamic_update_invalid_update")
                    out.append(rr)
                    return True
            elif self.section == PREREQUISITE:
                # Zeek never consumes prerequisite RDATA (it assumes it is empty).
                if ttl != 0:
                    self.weird("DNS_dynamic_update_prereq_nonzero_ttl", str(ttl))
                elif ((rclass in (C_ANY, C_NONE)) and rdlength == 0) or rclass == self.zclass:
                    if self.wants("dns_dynamic_update_pre"):
                        rr.event = "dns_dynamic_update_pre"
                else:
                    self.weird("DNS_dynamic_update_invalid_prereq")
                out.append(rr)
                return True

        if rdlength == 0 and cur.left > 0:
            if self.msg.is_dynamic_update:
                out.append(rr)
                return True
            return self.fail("zero_rdlength", "DNS_zero_rdlength", cur)

        out.append(rr)
        return self.rdata(cur, rr)

    # -- RDATA -----------------------------------------------------------
    def rdata(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        t = rr.rtype
        n = rr.rdlength
        if t == T_A:
            if n != 4:
                return self.fail("A_bad_length", "DNS_RR_bad_length", cur)
            raw = cur.long()
            rr.rdata["address"] = str(ipaddress.IPv4Address(raw))
            return self.event(rr, "dns_A_reply")
        if t in (T_AAAA, T_A6):
            # Zeek reads 16 bytes whatever RDLENGTH says (A6 included), with
            # zeros for what is past the end of the message.
            words = [cur.long() for _ in range(4)]
            rr.rdata["address"] = zeek_addr_str(b"".join(w.to_bytes(4, "big") for w in words))
            return self.event(rr, "dns_AAAA_reply" if t == T_AAAA else "dns_A6_reply")
        if t in (T_NS, T_CNAME, T_PTR):
            start = cur.pos
            target = self.name(cur)
            if target is None:
                return False
            if cur.pos - start != n:
                self.weird("DNS_RR_length_mismatch")
            rr.rdata["target"] = target
            return self.event(rr, {T_NS: "dns_NS_reply", T_CNAME: "dns_CNAME_reply",
                                   T_PTR: "dns_PTR_reply"}[t])
        if t == T_SOA:
            start = cur.pos
            mname = self.name(cur)
            if mname is None:
                return False
            rname = self.name(cur)
            if rname is None:
                return False
            if cur.left < 20:
                return self.fail("SOA_too_short", None, cur)
            vals = [cur.long() for _ in range(5)]
            if cur.pos - start != n:
                self.weird("DNS_RR_length_mismatch")
            rr.rdata.update(mname=mname, rname=rname, serial=vals[0], refresh=vals[1],
                            retry=vals[2], expire=vals[3], minimum=vals[4])
            return self.event(rr, "dns_SOA_reply")
        if t == T_WKS:
            if not self.wants("dns_WKS_reply"):
                cur.skip(n)
                return True
            # Zeek raises the event but leaves the cursor on the RDATA.
            rr.event = "dns_WKS_reply"
            return True
        if t == T_HINFO:
            if not self.wants("dns_HINFO_reply"):
                cur.skip(n)
                return True
            left = [n]
            cpu = self.char_string(cur, left)
            os_ = self.char_string(cur, left)
            rr.rdata.update(cpu=cpu, os=os_)
            rr.event = "dns_HINFO_reply"
            return left[0] == 0 or self.fail("HINFO_length", None, cur)
        if t == T_MX:
            start = cur.pos
            pref = cur.short()
            exchange = self.name(cur)
            if exchange is None:
                return False
            if cur.pos - start != n:
                self.weird("DNS_RR_length_mismatch")
            rr.rdata.update(preference=pref, exchange=exchange)
            return self.event(rr, "dns_MX_reply")
        if t in (T_TXT, T_SPF):
            ev = "dns_TXT_reply" if t == T_TXT else "dns_SPF_reply"
            if not self.wants(ev):
                cur.skip(n)
                return True
            left = [n]
            strings = []
            while True:
                s = self.char_string(cur, left)
                if s is None:
                    break
                strings.append(s)
            rr.rdata["strings"] = strings
            rr.event = ev
            return left[0] == 0 or self.fail("char_string_past_rdlength", None, cur)
        if t == T_CAA:
            if not self.wants("dns_CAA_reply"):
                cur.skip(n)
                return True
            flags = cur.short()
            tag_len = flags & 0xFF
            left = n - 2
            if tag_len >= left:
                return self.fail("CAA_tag_past_rdlength", "DNS_CAA_char_str_past_rdlen", cur)
            tag = cur.stream(tag_len)
            left -= tag_len
            value = cur.stream(left)
            left -= len(value)
            rr.rdata.update(flags=flags >> 8, tag=wire_str(tag), value=wire_str(value))
            rr.event = "dns_CAA_reply"
            return left == 0 or self.fail("CAA_length", None, cur)
        if t == T_NBS:
            cur.skip(n)
            return True
        if t == T_SRV:
            if self.resp_port == NETBIOS_PORT:
                # NBSTAT (RFC 1002 4.2.18): Zeek neither parses nor skips it.
                return True
            start = cur.pos
            prio, weight, port = cur.short(), cur.short(), cur.short()
            target = self.name(cur)
            if target is None:
                return False
            if cur.pos - start != n:
                self.weird("DNS_RR_length_mismatch")
            rr.rdata.update(priority=prio, weight=weight, port=port, target=target)
            return self.event(rr, "dns_SRV_reply")
        if t == T_NAPTR:
            return self.naptr(cur, rr)
        if t == T_EDNS:
            return self.edns(cur, rr)
        if t == T_TKEY:
            return self.tkey(cur, rr)
        if t == T_TSIG:
            return self.tsig(cur, rr)
        if t == T_RRSIG:
            return self.rrsig(cur, rr)
        if t == T_DNSKEY:
            return self.dnskey(cur, rr)
        if t == T_NSEC:
            return self.nsec(cur, rr)
        if t == T_NSEC3:
            return self.nsec3(cur, rr)
        if t == T_NSEC3PARAM:
            return self.nsec3param(cur, rr)
        if t == T_DS:
            return self.ds(cur, rr)
        if t == T_BINDS:
            return self.binds(cur, rr)
        if t == T_SSHFP:
            return self.sshfp(cur, rr)
        if t == T_LOC:
            return self.loc(cur, rr)
        if t in (T_SVCB, T_HTTPS):
            return self.svcb(cur, rr)
        # Any other type: Zeek reports it and skips the RDATA.
        if self.wants("dns_unknown_reply"):
            rr.event = "dns_unknown_reply"
        self.weird("DNS_RR_unknown_type", str(t))
        rr.rdata["data"] = cur.stream(n)
        return True

    def event(self, rr: ResourceRecord, name: str) -> bool:
        if self.wants(name):
            rr.event = name
        return True

    def char_string(self, cur: _Cursor, left: list) -> Optional[str]:
        """A <character-string> (RFC 1035 3.3); ``left`` is the RDATA left."""
        if left[0] <= 0:
            return None
        size = cur._at(cur.pos)
        left[0] -= 1
        cur.pos += 1
        cur.left -= 1
        if size > left[0]:
            self.weird("DNS_TXT_char_str_past_rdlen")
            return None
        s = self.data[cur.pos:cur.pos + size]
        left[0] -= size
        cur.pos += size
        cur.left -= size
        return wire_str(s)

    def naptr(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        order, pref = cur.short(), cur.short()
        left = [rr.rdlength - 4]
        if cur.left <= 0 or left[0] <= 0:
            self.msg.violation = self.msg.violation or "DNS_NAPTR_too_short"
            return self.fail("NAPTR_too_short", None, cur)
        flags = self.char_string(cur, left)
        service = self.char_string(cur, left)
        regexp = self.char_string(cur, left)
        # A failed char-string does not stop Zeek from reading the replacement.
        replacement = self.name(cur, downcase=False)
        if flags is None or service is None or regexp is None or replacement is None:
            self.msg.violation = self.msg.violation or "DNS_NAPTR_RR_too_short"
            if self.msg.error is None:
                return self.fail("NAPTR_RR_too_short", None, cur)
            return False
        rr.rdata.update(order=order, preference=pref, flags=flags, service=service,
                        regexp=regexp, replacement=replacement)
        return self.event(rr, "dns_NAPTR_reply")

    def edns(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        # OPT pseudo-RR (RFC 6891 6.1.2): class = UDP payload size, TTL = ext-rcode/version/flags.
        rr.rdata.update(payload_size=rr.rclass, extended_rcode=(rr.ttl >> 24) & 0xFF,
                        version=(rr.ttl >> 16) & 0xFF, z=rr.ttl & 0xFFFF, options=[])
        remaining = rr.rdlength
        while remaining >= 4:
            code, olen = cur.short(), cur.short()
            remaining -= 4
            if olen > remaining:
                return self.fail("EDNS_option_past_rdlength", "EDNS_truncated_option", cur)
            odata = self.data[cur.pos:cur.pos + olen]
            rr.rdata["options"].append((code, odata))
            self.edns_option_weirds(code, odata)
            cur.skip(olen)
            remaining -= olen
        if remaining != 0:
            return self.fail("EDNS_option_past_rdlength", "EDNS_truncated_option", cur)
        return True

    def edns_option_weirds(self, code: int, odata: bytes) -> None:
        if code == 8:   # Client Subnet, RFC 7871 6
            if len(odata) <= 4:
                self.weird("EDNS_ECS_invalid_option_len")
                return
            family = (odata[0] << 8) | odata[1]
            src = odata[2]
            have = (len(odata) - 4) * 8
            for fam, bits, tag in ((1, 32, "v4"), (2, 128, "v6")):
                if family == fam:
                    if src > bits:
                        self.weird(f"EDNS_ECS_invalid_addr_{tag}_prefix", f"{src} bits")
                    elif src > have:
                        self.weird(f"EDNS_ECS_invalid_addr_{tag}", f"need {src} bits, have {have} bits")
        elif code == 11:   # TCP keepalive, RFC 7828 3.2
            if len(odata) in (0, 2) and self.transport == "udp":
                self.weird("EDNS_TCP_Keepalive_In_UDP")

    def tkey(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        if not self.wants("dns_TKEY"):
            cur.skip(rr.rdlength)
            return True
        if cur.left < 16:
            return self.fail("TKEY_too_short", None, cur)
        alg = self.name(cur)
        if alg is None:
            return False
        inception, expiration = cur.long(), cur.long()
        mode, error = cur.short(), cur.short()
        key = cur.octets()
        cur.octets()
        rr.rdata.update(algorithm=alg, inception=inception, expiration=expiration,
                        mode=mode, error=error, key=key)
        rr.event = "dns_TKEY"
        return True

    def tsig(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        # Parsed whatever the handlers; Zeek does not check RDLENGTH here.
        alg = self.name(cur, size=TSIG_NAME_BUFFER)
        if alg is None:
            return False
        time_s, time_ms, fudge = cur.long(), cur.short(), cur.short()
        mac = cur.octets()
        orig_id, error = cur.short(), cur.short()
        cur.octets()
        rr.rdata.update(algorithm=alg, time_signed=time_s, time_ms=time_ms, fudge=fudge,
                        mac=mac, orig_id=orig_id, error=error)
        return self.event(rr, "dns_TSIG_addl")

    def dnssec_algo_weird(self, kind: str, algo: int) -> None:
        if algo in _DNSSEC_ALGOS_OK:
            return
        what = _DNSSEC_ALGO_WEIRD.get(algo, "unknown")
        self.weird(f"DNSSEC_{kind}_{what}_ZoneSignAlgo", str(algo))

    def rrsig(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        if not self.wants("dns_RRSIG"):
            cur.skip(rr.rdlength)
            return True
        if cur.left < 18:
            return self.fail("RRSIG_too_short", None, cur)
        type_covered = cur.short()
        al = cur.short()
        orig_ttl, sig_exp, sig_incep = cur.long(), cur.long(), cur.long()
        key_tag = cur.short()
        start = cur.pos
        signer = self.name(cur)
        if signer is None:
            return False
        sig = cur.stream(rr.rdlength - ((cur.pos - start) + 18))
        self.dnssec_algo_weird("RRSIG", al >> 8)
        rr.rdata.update(type_covered=type_covered, algorithm=al >> 8, labels=al & 0xFF,
                        orig_ttl=orig_ttl, expiration=sig_exp, inception=sig_incep,
                        key_tag=key_tag, signer=signer, signature=sig)
        rr.event = "dns_RRSIG"
        return True

    def dnskey(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        if not self.wants("dns_DNSKEY"):
            cur.skip(rr.rdlength)
            return True
        if cur.left < 4:
            return self.fail("DNSKEY_too_short", None, cur)
        flags = cur.short()
        pa = cur.short()
        key = cur.stream(rr.rdlength - 4)
        if flags & 0xFE7E:
            self.weird("DNSSEC_DNSKEY_Invalid_Flag", str(flags))
        if flags & 0x0181 == 0x0181:
            self.weird("DNSSEC_DNSKEY_Revoked_KSK", str(flags))
        if pa >> 8 != 3:
            self.weird("DNSSEC_DNSKEY_Invalid_Protocol", str(pa >> 8))
        self.dnssec_algo_weird("DNSKEY", pa & 0xFF)
        rr.rdata.update(flags=flags, protocol=pa >> 8, algorithm=pa & 0xFF, public_key=key)
        rr.event = "dns_DNSKEY"
        return True

    def bitmaps(self, cur: _Cursor, left: int, kind: str) -> list:
        out = []
        while left > 0 and cur.left > 0:
            wb = cur.short()
            if wb & 0xFF == 0:
                self.weird(f"DNSSEC_{kind}_bitmapLen0", str(wb >> 8))
                break
            out.append(cur.stream(wb & 0xFF))
            left -= 2 + (wb & 0xFF)
        return out

    def nsec(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        if not self.wants("dns_NSEC"):
            cur.skip(rr.rdlength)
            return True
        start = cur.pos
        nxt = self.name(cur)
        if nxt is None:
            return False
        rr.rdata.update(next_name=nxt,
                        bitmaps=self.bitmaps(cur, rr.rdlength - (cur.pos - start), "NSEC"))
        rr.event = "dns_NSEC"
        return True

    def nsec3(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        if not self.wants("dns_NSEC3"):
            cur.skip(rr.rdlength)
            return True
        if cur.left < 6:
            return self.fail("NSEC3_too_short", None, cur)
        start = cur.pos
        af = cur.short()
        iterations = cur.short()
        salt = cur.stream(cur.byte()) if cur.left > 0 else b""
        nhash = cur.stream(cur.byte()) if cur.left > 0 else b""
        rr.rdata.update(hash_algorithm=af >> 8, flags=af & 0xFF, iterations=iterations,
                        salt=salt, next_hash=nhash,
                        bitmaps=self.bitmaps(cur, rr.rdlength - (cur.pos - start), "NSEC3"))
        rr.event = "dns_NSEC3"
        return True

    def nsec3param(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        if not self.wants("dns_NSEC3PARAM"):
            cur.skip(rr.rdlength)
            return True
        if cur.left < 5:
            return self.fail("NSEC3PARAM_too_short", None, cur)
        af = cur.short()
        iterations = cur.short()
        salt = cur.stream(cur.byte()) if cur.left > 0 else b""
        rr.rdata.update(hash_algorithm=af >> 8, flags=af & 0xFF, iterations=iterations, salt=salt)
        rr.event = "dns_NSEC3PARAM"
        return True

    def ds(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        if not self.wants("dns_DS"):
            cur.skip(rr.rdlength)
            return True
        if cur.left < 4:
            return self.fail("DS_too_short", None, cur)
        key_tag = cur.short()
        ad = cur.short()
        digest = cur.stream(rr.rdlength - 4)
        dtype = ad & 0xFF
        if dtype == 0:
            self.weird("DNSSEC_DS_ReservedDigestType", str(dtype))
        elif dtype not in (1, 2, 3, 4):
            self.weird("DNSSEC_DS_unknown_DigestType", str(dtype))
        rr.rdata.update(key_tag=key_tag, algorithm=ad >> 8, digest_type=dtype, digest=digest)
        rr.event = "dns_DS"
        return True

    def binds(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        if not self.wants("dns_BINDS"):
            cur.skip(rr.rdlength)
            return True
        if cur.left < 5:
            return self.fail("BINDS_too_short", None, cur)
        v = cur.long()
        complete = cur.byte()    # Zeek reads 5 bytes whatever RDLENGTH says
        rr.rdata.update(algorithm=v >> 24, key_id=(v >> 8) & 0xFFFF, removal_flag=v & 0xFF,
                        complete_flag=complete)
        rr.event = "dns_BINDS"
        return True

    def sshfp(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        if not self.wants("dns_SSHFP"):
            cur.skip(rr.rdlength)
            return True
        if cur.left < 2:
            return self.fail("SSHFP_too_short", None, cur)
        af = cur.short()
        fp = cur.stream(rr.rdlength - 2)
        rr.rdata.update(algorithm=af >> 8, fp_type=af & 0xFF, fingerprint=fp)
        rr.event = "dns_SSHFP"
        return True

    def loc(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        if rr.rdlength != 16:
            return self.fail("LOC_bad_length", "dns_invalid_loc_length", cur)
        if not self.wants("dns_LOC"):
            cur.skip(16)
            return True
        vs, hv = cur.short(), cur.short()
        lat, lon, alt = cur.long(), cur.long(), cur.long()
        if vs >> 8 != 0:
            self.weird("DNS_LOC_version_unrecognized", str(vs >> 8))
        rr.rdata.update(version=vs >> 8, size=vs & 0xFF, horiz_pre=hv >> 8, vert_pre=hv & 0xFF,
                        latitude=lat, longitude=lon, altitude=alt)
        rr.event = "dns_LOC"
        return True

    def svcb(self, cur: _Cursor, rr: ResourceRecord) -> bool:
        # RFC 9460 2.2; parsed whatever the handlers.
        if rr.rdlength < 3:
            return self.fail("SVCB_too_short", "DNS_SVCB_wrong_length", cur)
        start = cur.pos
        prio = cur.short()
        target = self.name(cur, downcase=False)
        if target is None:
            return False
        if target == "":
            target = "."
        params_len = rr.rdlength - (cur.pos - start)
        params = []
        if params_len > 0:
            if prio == 0:
                self.weird("DNS_SVCB_aliasmode_with_params")
            params = self.svc_params(cur, params_len)
        rr.rdata.update(priority=prio, target=target, params=params)
        return self.event(rr, "dns_SVCB" if rr.rtype == T_SVCB else "dns_HTTPS")

    def svc_params(self, cur: _Cursor, left: int) -> list:
        """SvcParams (RFC 9460 2.2): Zeek's weirds; every value consumes its length."""
        out = []
        while left >= 4:
            key, vlen = cur.short(), cur.short()
            left -= 4
            if vlen > left:
                self.weird("DNS_SVCB_param_value_toobig", f"{vlen} capped to {left}")
                vlen = left
            else:
                value = self.data[cur.pos:cur.pos + vlen]
                if key == 0 and (vlen == 0 or vlen % 2):
                    self.weird("DNS_SVCB_mandatory_length_invalid")
                elif key == 1 and not _alpn_ok(value):
                    self.weird("DNS_SVCB_alpn_length_invalid")
                elif key == 2 and vlen > 0:
                    self.weird("DNS_SVCB_nodefaultalpn_value")
                elif key == 3 and vlen != 2:
                    self.weird("DNS_SVCB_port_length_invalid")
                elif key in (4, 6) and vlen % (4 if key == 4 else 16):
                    self.weird("DNS_SVCB_hint_length_invalid")
                elif key > 6:
                    self.weird("DNS_SVCB_key_reserved_or_invalid")
            out.append((key, cur.stream(vlen)))
            left -= vlen
        return out


def _alpn_ok(value: bytes) -> bool:
    """Zeek's check of an alpn SvcParam: length-prefixed, non-empty IDs filling the value."""
    i = 0
    while i + 2 <= len(value):
        n = value[i]
        i += 1
        if n == 0 or n + i > len(value):
            return False
        i += n
    return i == len(value)


def zeek_addr_str(raw16: bytes) -> str:
    """Format 16 address bytes as Zeek does (IPAddr::AsString): IPv4-mapped
    addresses print as IPv4, others with Zeek's inet_ntop rules."""
    return format_addr(ipaddress.IPv6Address(bytes(raw16)))


def accepted_opcode(opcode: int, is_netbios: bool) -> bool:
    """Whether Zeek's analyzer looks past the header (otherwise DNS_unknown_opcode)."""
    return is_netbios or opcode in (0, 4, 5)


def interpret(data: bytes, *, is_netbios: bool = False, resp_port: Optional[int] = None,
              transport: str = "udp", server: Optional[str] = None,
              options: Optional[ParseOptions] = None) -> DnsMessage:
    """Walk one message as Zeek does and never raise (except for an unusable header).

    ``is_netbios``: either port of the connection is 137 (Zeek decides this
    once per connection). ``resp_port``: the responder port now (137 changes
    label and SRV rules). ``server``: responder address, for dns_skip_auth /
    dns_skip_addl. Raises :class:`DnsParseError` only when Zeek ignores the
    message before raising any event: shorter than the header
    (``DNS_truncated_len_lt_hdr_len``) or an opcode it does not analyze
    (``DNS_unknown_opcode``).
    """
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise DnsParseError("shorter_than_header", "DNS_truncated_len_lt_hdr_len", 0, None)
    header = Header.from_bytes(data)
    if not accepted_opcode(header.opcode, is_netbios):
        raise DnsParseError("unknown_opcode", "DNS_unknown_opcode", 2, None, str(header.opcode))
    msg = DnsMessage(header=header, is_netbios=is_netbios)
    _Interpreter(data, msg, resp_port, transport, server, options or ParseOptions()).run()
    return msg


def parse_message(data: bytes, **kwargs: Any) -> DnsMessage:
    """Parse one DNS message; raise :class:`DnsParseError` where Zeek stops parsing.

    Same arguments as :func:`interpret`. The error's ``partial`` attribute has
    what was parsed before the failure.
    """
    msg = interpret(data, **kwargs)
    if msg.error is not None:
        raise msg.error
    return msg
