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
``plain_message(data, options) -> DnsMessage | None``
    The message read whole in C when it is plain (what almost every lookup
    is); None when the walk must read it. ``interpret`` tries it first.
``walk(data, header, ...) -> DnsMessage``
    The walk alone, for a caller that made interpret's checks and tried
    plain_message itself.
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

from pathlib import Path
from typing import Any

from cicd_audit import compiled

from . import rdata
from .wire import (  # noqa: F401  (the module's public API includes the message model)
    ADDITIONAL,
    ANSWER,
    AUTHORITY,
    C_ANY,
    C_NONE,
    HEADER_LEN,
    NAME_BUFFER,
    NETBIOS_PORT,
    PREREQUISITE,
    QUESTION,
    T_A,
    T_AAAA,
    T_CNAME,
    T_NS,
    T_PTR,
    T_SOA,
    UPDATE,
    Cursor,
    DnsMessage,
    DnsParseError,
    Header,
    ParseOptions,
    Question,
    ResourceRecord,
    ascii_lower,
    decode_netbios_name,
    wire_bytes,
    wire_str,
    zeek_addr_str,
)

# Plain names, questions and RR headers read in C (_wirename.c) when it is built; extract_name,
# question and answer_header below are its reference.
_compiled = compiled.load("cicd_audit.recorder.logs.dns._wirename", Path(__file__).with_name("_wirename.c"))
_read_name = _compiled.read_name if _compiled is not None else None
_read_question = _compiled.read_question if _compiled is not None else None
_read_rr_header = _compiled.read_rr_header if _compiled is not None else None
# A whole plain message (one question, address and name answers) read in C; the walk below is its reference.
_read_plain_message = _compiled.read_plain_message if _compiled is not None else None

# The events of the answers a plain message may hold (rdata.py's _a, _aaaa and _target raise them).
PLAIN_ANSWER_EVENTS = {T_A: "dns_A_reply", T_AAAA: "dns_AAAA_reply", T_NS: "dns_NS_reply",
                       T_CNAME: "dns_CNAME_reply", T_PTR: "dns_PTR_reply"}


class _Interpreter:
    """One walk over one message (Zeek's DNS_Interpreter::ParseMessage)."""

    def __init__(self, data: bytes, msg: DnsMessage, resp_port: int | None,
                 transport: str, server: str | None, opts: ParseOptions):
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

    def fail(self, reason: str, weird: str | None, cur: Cursor | None, addl: str = "") -> bool:
        if weird:
            self.weird(weird, addl)
        if self.msg.error is None:
            self.msg.error = DnsParseError(reason, weird, cur.pos if cur else 0, self.msg, addl)
        return False

    def wants(self, event: str) -> bool:
        return event in self.handled and not self.skip_event

    # -- names -----------------------------------------------------------
    def extract_name(self, cur: Cursor, buf: bytearray, size: int, downcase: bool = True,
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
        if _read_name is not None and not buf:
            plain = _read_name(self.data, cur.pos, cur.left, size, downcase, depth, self.opts.max_compression_depth)
            if plain is not None:
                buf += plain[0]
                cur.pos, cur.left = plain[1], plain[2]
                return True
        start = len(buf)
        data = self.data
        end = len(data)
        while True:
            # A plain label that passes every check of extract_label, read inline (most labels are).
            pos, left = cur.pos, cur.left
            if left > 0 and 0 <= pos < end:
                label_len = data[pos]
                if 0 < label_len <= 63 and label_len < left and label_len < size - len(buf) \
                        and pos + 1 + label_len <= end:
                    buf += data[pos + 1:pos + 1 + label_len]
                    buf.append(0x2E)
                    cur.pos = pos + 1 + label_len
                    cur.left = left - 1 - label_len
                    continue
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
            ascii_lower(buf, start, len(buf))
        return True

    def extract_label(self, cur: Cursor, buf: bytearray, size: int, depth: int):
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
            sub = Cursor(self.data, offset, here - offset)
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

    def name(self, cur: Cursor, downcase: bool = True, size: int = NAME_BUFFER) -> str | None:
        buf = bytearray()
        if not self.extract_name(cur, buf, size, downcase):
            return None
        return wire_str(buf)

    # -- message ---------------------------------------------------------
    def run(self) -> None:
        msg, opts, h = self.msg, self.opts, self.msg.header
        cur = Cursor(self.data, HEADER_LEN, len(self.data) - HEADER_LEN)

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

    def question(self, cur: Cursor) -> bool:
        plain = _read_question and _read_question(self.data, cur.pos, cur.left, NAME_BUFFER,
                                                  self.opts.max_compression_depth)
        if plain:
            raw, cur.pos, cur.left, qtype, qclass = plain
            self.msg.questions.append(Question(wire_str(raw.lower()), wire_str(raw), qtype, qclass,
                                               self.question_event()))
            return True
        buf = bytearray()
        if not self.extract_name(cur, buf, NAME_BUFFER, downcase=False):
            return False
        if cur.left < 4:
            return self.fail("question_too_short", "DNS_truncated_quest_too_short", cur)
        original = wire_str(buf)
        ascii_lower(buf, 0, len(buf))
        qtype = cur.short()
        qclass = cur.short()
        self.msg.questions.append(Question(wire_str(buf), original, qtype, qclass, self.question_event()))
        return True

    def question_event(self) -> str:
        return question_event(self.msg.header)

    def answers(self, cur: Cursor, n: int, section: str, out: list) -> bool:
        self.section = section
        while n > 0 and self.answer(cur, out):
            n -= 1
        return n == 0

    def answer_header(self, cur: Cursor):
        name = self.name(cur)
        if name is None:
            return None
        if cur.left < 4:
            self.fail("rr_header_too_short", "DNS_truncated_ans_too_short", cur)
            return None
        return name, cur.short(), cur.short()

    def answer(self, cur: Cursor, out: list) -> bool:
        plain = _read_rr_header and _read_rr_header(self.data, cur.pos, cur.left, NAME_BUFFER,
                                                    self.opts.max_compression_depth)
        if plain:
            raw, cur.pos, cur.left, rtype, rclass, ttl, rdlength = plain
            name = wire_str(raw)
        else:
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
        return rdata.parse(self, cur, rr)

    def event(self, rr: ResourceRecord, name: str) -> bool:
        """Raise Zeek's event for rr if a loaded script handles it; the walk goes on."""
        if self.wants(name):
            rr.event = name
        return True


def question_event(h: Header) -> str:
    """The Zeek event a question raises."""
    if not h.qr:
        return "dns_request"
    if h.ancount == 0 and h.nscount == 0 and h.arcount == 0:
        return "dns_rejected"      # a reply with no RRs at all
    return "dns_query_reply"


def read_plain(data: bytes, options: ParseOptions) -> tuple | None:
    """A plain message read whole in C (_wirename.c's read_plain_message says which are, and what it
    gives: header fields, question, answers); None for the walk. Zeek must skip the authority and
    additional sections, which the C reader does not read."""
    if _read_plain_message is None or not (options.skip_all_auth and options.skip_all_addl):
        return None
    return _read_plain_message(data, NAME_BUFFER, options.max_compression_depth)


def plain_message(data: bytes, options: ParseOptions, header: Header | None = None) -> DnsMessage | None:
    """The message as the walk would leave it, when it is plain (read_plain); None for the walk."""
    plain = read_plain(data, options)
    if plain is None:
        return None
    fields, (name, original, qtype, qclass), answers = plain
    h = header or Header(*fields)
    msg = DnsMessage(header=h, confirmed=True, ended=True)
    msg.questions.append(Question(name, original, qtype, qclass, question_event(h)))
    handled = options.handled_events
    for owner, rtype, rclass, ttl, rdlength, value in answers:
        rr = ResourceRecord(ANSWER, owner, rtype, rclass, ttl, rdlength)
        if rtype == T_A:
            rr.rdata["address"] = value
        elif rtype == T_AAAA:
            rr.rdata["address"] = zeek_addr_str(value)
        else:
            rr.rdata["target"] = value
        event = PLAIN_ANSWER_EVENTS[rtype]
        if event in handled:
            rr.event = event
        msg.answers.append(rr)
    return msg


def accepted_opcode(opcode: int, is_netbios: bool) -> bool:
    """Whether Zeek's analyzer looks past the header (otherwise DNS_unknown_opcode)."""
    return is_netbios or opcode in (0, 4, 5)


def interpret(data: bytes, *, is_netbios: bool = False, resp_port: int | None = None,
              transport: str = "udp", server: str | None = None,
              options: ParseOptions | None = None, header: Header | None = None) -> DnsMessage:
    """Walk one message as Zeek does and never raise (except for an unusable header).

    ``is_netbios``: either port of the connection is 137 (Zeek decides this
    once per connection). ``resp_port``: the responder port now (137 changes
    label and SRV rules). ``server``: responder address, for dns_skip_auth /
    dns_skip_addl. Raises :class:`DnsParseError` only when Zeek ignores the
    message before raising any event: shorter than the header
    (``DNS_truncated_len_lt_hdr_len``) or an opcode it does not analyze
    (``DNS_unknown_opcode``). ``header``: the message's header when the
    caller has already read it.
    """
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise DnsParseError("shorter_than_header", "DNS_truncated_len_lt_hdr_len", 0, None)
    if header is None:
        header = Header.from_bytes(data)
    if not accepted_opcode(header.opcode, is_netbios):
        raise DnsParseError("unknown_opcode", "DNS_unknown_opcode", 2, None, str(header.opcode))
    options = options or ParseOptions()
    if not is_netbios:
        msg = plain_message(data, options, header)
        if msg is not None:
            return msg
    return walk(data, header, is_netbios=is_netbios, resp_port=resp_port, transport=transport, server=server,
                options=options)


def walk(data: bytes, header: Header, *, is_netbios: bool, resp_port: int | None, transport: str,
         server: str | None, options: ParseOptions) -> DnsMessage:
    """The walk alone, for a message whose length and opcode Zeek accepts (interpret checked them,
    or the caller did) and that plain_message did not read."""
    msg = DnsMessage(header=header, is_netbios=is_netbios)
    _Interpreter(data, msg, resp_port, transport, server, options).run()
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
