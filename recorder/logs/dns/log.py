"""dns.log rows for one connection, as Zeek 9.1's base/protocols/dns/main.zeek writes them.

:class:`DnsConnectionLog` plays the part of Zeek's DNS analyzer plus the DNS
script for one connection: it reads each message as
:func:`~cicd_audit.recorder.logs.dns.message.interpret` does (a plain one read
whole in C by ``read_plain``, any other walked after its checks), replays the events Zeek
would raise (dns_message, dns_request, dns_rejected, the RR reply events,
dns_end) through a transcription of main.zeek's state machine (one
``pending_query`` fast path, queues of pending queries and replies per
transaction id, per-message rows for multicast destinations) and returns each
row when Zeek would write it. Nothing is shared with the caller: each call
takes the connection's current orientation and returns one DnsOutput.
docs/dns.md has the rules and what the caller (connection tracking) must do
around it: orientation flips, the dns_session_timeout timer, TCP close.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cicd_audit.zeeklog.schema import load_schema

from .message import (
    HEADER_LEN,
    NETBIOS_PORT,
    PLAIN_ANSWER_EVENTS,
    Header,
    ParseOptions,
    accepted_opcode,
    decode_netbios_name,
    read_plain,
    walk,
)
from .names import OPCODE_DYNAMIC_UPDATE, OPCODE_NOTIFY, OPCODE_QUERY, opcode_name, qclass_name, qtype_name, rcode_name
from .render import (
    ADDRESS_EVENTS,
    LOGGED_SECTIONS,
    logged_answer,
    plain_answer,
    reply_string,
    resolved_address,
    ttl_seconds,
)

# Field order of dns.log (zeek_schemas/dns.tsv).
FIELDS = load_schema("dns").names       # zeek_schemas/dns.tsv: the writer's columns too

# main.zeek tracks only these opcodes (RFC 1035 QUERY, RFC 1996 NOTIFY, RFC 2136 UPDATE).
TRACKED_OPCODES = (OPCODE_QUERY, OPCODE_NOTIFY, OPCODE_DYNAMIC_UPDATE)

# DNS::multicast_subnets: messages to these destinations are logged one row
# each, never paired, because replies come back on other connections.
MULTICAST_SUBNETS = (ipaddress.ip_network("224.0.0.0/4"), ipaddress.ip_network("ff00::/8"))

# DNS::max_pending_msgs / DNS::max_pending_query_ids: give up pairing (log and
# drop the unmatched entries) past these many, as a broken resolver or an
# AXFR would otherwise grow the state without bound.
MAX_PENDING_MSGS = 50
MAX_PENDING_QUERY_IDS = 50

# DPD::ignore_violations_after: a protocol violation only disables the
# analyzer while the connection has carried at most this many payload bytes.
IGNORE_VIOLATIONS_AFTER = 10 * 1024

# Zeek's TCP DNS framing states (Contents_DNS).
_LEN_HI, _LEN_LO, _MESSAGE = 0, 1, 2

# Bytes of out-of-order TCP data kept per direction while waiting for a hole to fill.
MAX_TCP_OUT_OF_ORDER = 256 * 1024


class Orientation(NamedTuple):
    """A connection's endpoints as the DNS log writes them: who is the originator, who the responder."""

    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int

    def swapped(self) -> Orientation:
        return Orientation(self.resp_h, self.resp_p, self.orig_h, self.orig_p)


class DnsOutput(NamedTuple):
    """What one call of DnsConnectionLog produced.

    ``rows``: the dns.log rows completed by the call. ``weirds``: ``(ts, name,
    addl)`` raised by the call, with Zeek's weird names. ``resolved``: one
    ``(query, addresses)`` per row in ``rows`` whose answers held A/AAAA
    records, the addresses as events.address_text writes them (taken from the
    records, never from the ``answers`` text). ``flipped``: the analyzer
    flipped the connection's roles during the call; rows written after the
    flip carry the swapped orientation, and the caller must swap its own
    connection state (later calls pass the new orientation and ``is_orig``).
    """

    rows: tuple = ()
    weirds: tuple = ()
    resolved: tuple = ()
    flipped: bool = False


# Most calls complete nothing: one shared empty result (a tuple, so nobody can change it).
NO_OUTPUT = DnsOutput()


@dataclass
class Info:
    """DNS::Info in main.zeek (the id/uid/proto columns are read at write time)."""

    ts: float
    trans_id: int
    rtt: float | None = None
    query: str | None = None
    qclass: int | None = None
    qclass_name: str | None = None
    qtype: int | None = None
    qtype_name: str | None = None
    rcode: int | None = None
    rcode_name: str | None = None
    AA: bool = False
    TC: bool = False
    RD: bool = False
    RA: bool = False
    Z: int = 0
    answers: list | None = None
    TTLs: list | None = None
    rejected: bool = False
    opcode: int | None = None
    opcode_name: str | None = None
    total_answers: int | None = None
    total_replies: int | None = None
    saw_query: bool = False
    saw_reply: bool = False
    addresses: list | None = None   # what its A/AAAA answers resolved (DnsOutput.resolved)


@dataclass
class _State:
    """DNS::State: the pending_query fast path and per-id FIFO queues (insertion-ordered)."""

    pending_query: Info | None = None
    pending_queries: dict | None = None
    pending_replies: dict | None = None


@dataclass
class _TcpDirection:
    """One direction of a DNS-over-TCP stream: reassembly plus Zeek's 2-byte framing."""

    next_seq: int | None = None
    out_of_order: dict = field(default_factory=dict)
    ooo_bytes: int = 0
    state: int = _LEN_HI
    msg_size: int = 0
    buf: bytearray = field(default_factory=bytearray)


# Asked about the responder of every message; a session has few responders (its resolvers).
_ADDRESS_CACHE = 4096


def is_multicast_subnet(addr: Any) -> bool:
    """In DNS::multicast_subnets: each message to it is a row of its own."""
    return _multicast_subnet_text(str(addr))


def _zeek_is_multicast(addr: Any) -> bool:
    return _zeek_multicast_text(str(addr))


@functools.lru_cache(maxsize=_ADDRESS_CACHE)
def _multicast_subnet_text(text: str) -> bool:
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(a.version == n.version and a in n for n in MULTICAST_SUBNETS)


@functools.lru_cache(maxsize=_ADDRESS_CACHE)
def _zeek_multicast_text(text: str) -> bool:
    """Zeek's IPAddr::IsMulticast: first octet 224 for IPv4 (not all of 224/4), ff00::/8 for IPv6."""
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return False
    if a.version == 6 and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    if a.version == 4:
        return a.packed[0] == 224
    return a.packed[0] == 0xFF


def dns_row(info: Info, uid: str, conn: Any, proto: str) -> dict:
    """The dns.log row of ``info``, written now: ``conn`` is the connection's orientation at this moment."""
    return {
        "ts": info.ts,
        "uid": uid,
        "id.orig_h": str(conn.orig_h),
        "id.orig_p": int(conn.orig_p),
        "id.resp_h": str(conn.resp_h),
        "id.resp_p": int(conn.resp_p),
        "proto": proto,
        "trans_id": info.trans_id,
        "rtt": info.rtt,
        "query": info.query,
        "qclass": info.qclass,
        "qclass_name": info.qclass_name,
        "qtype": info.qtype,
        "qtype_name": info.qtype_name,
        "rcode": info.rcode,
        "rcode_name": info.rcode_name,
        "AA": info.AA,
        "TC": info.TC,
        "RD": info.RD,
        "RA": info.RA,
        "Z": info.Z,
        "answers": list(info.answers) if info.answers is not None else None,
        "TTLs": list(info.TTLs) if info.TTLs is not None else None,
        "rejected": info.rejected,
        "opcode": info.opcode,
        "opcode_name": info.opcode_name,
    }


class DnsConnectionLog:
    """dns.log rows for one connection.

    Every call (``message``, ``tcp_segment``, ``tcp_closed``, ``flush``) takes
    ``conn``, the connection's orientation now: any object with ``orig_h``,
    ``orig_p``, ``resp_h``, ``resp_p`` (``events.ConnId``, ``Orientation``).
    Rows written during the call carry it, as Zeek's DNS::Info shares the
    connection's conn_id record: a row written after a flip shows the flipped
    ``id`` even if its query came before. ``conn`` is only read, and only
    during the call. The constructor's ``conn`` decides NetBIOS, once, as Zeek
    does when it creates the analyzer.

    Each call returns a DnsOutput: the rows it completed, the weirds it raised,
    the addresses those rows resolved, and whether the analyzer flipped the
    connection's roles (the first message is a response sent by the
    originator, and the responder address is not multicast). After a flip the
    call goes on with the swapped orientation, and the caller swaps its own.
    ``flips`` counts them.

    ``limit_reached`` tells conn.log to add ``X`` to history.
    ``analyzer_disabled`` is set after a protocol violation that Zeek's DPD
    framework answers by removing the DNS analyzer; later messages are ignored
    (and for UDP the dns_session_timeout timer is gone with it).
    ``service`` is what the DNS analyzer contributes to conn.log's service
    column: ``"dns"`` once a message parsed through its answer section
    (AnalyzerConfirmation), ``None`` before that or after a violation removed
    a confirmed analyzer.
    """

    def __init__(self, uid: str, conn: Any, proto: str, *,
                 options: ParseOptions | None = None,
                 max_pending_msgs: int = MAX_PENDING_MSGS,
                 max_pending_query_ids: int = MAX_PENDING_QUERY_IDS):
        self.uid = uid
        self.proto = proto
        self.options = options or ParseOptions()
        self.max_pending_msgs = max_pending_msgs
        self.max_pending_query_ids = max_pending_query_ids
        self.limit_reached = False
        self.analyzer_disabled = False
        self.confirmed = False
        self._service_removed = False
        self.flips = 0
        self.messages = 0
        self.payload_bytes = 0
        # Zeek decides NetBIOS once, when the analyzer is created.
        self.is_netbios = NETBIOS_PORT in (int(conn.orig_p), int(conn.resp_p))
        self._first_message = True
        self._dns: Info | None = None           # c$dns
        self._state: _State | None = None       # c$dns_state
        # The call in progress: the orientation it was given (swapped by a flip) and what it produced (_end).
        self._conn: Any = None
        self._rows: list = []
        self._weirds: list = []
        self._resolved: list = []
        self._flipped = False
        self._tcp = {True: _TcpDirection(), False: _TcpDirection()}
        self._removed = False

    @classmethod
    def after_lookups(cls, uid: str, conn: Any, proto: str, *, options: ParseOptions | None,
                      messages: int, payload_bytes: int) -> DnsConnectionLog:
        """The log of a connection whose messages so far (``messages`` of them, ``payload_bytes``
        in all) were plain lookups, each a query and then its reply, all written: nothing is
        pending, the analyzer is confirmed, and a later message is not its first."""
        log = cls(uid, conn, proto, options=options)
        log.messages, log.payload_bytes = messages, payload_bytes
        log.confirmed = True
        log._first_message = False
        log._state = _State()
        return log

    # ------------------------------------------------------------------ input
    def message(self, conn: Any, ts: float, is_orig: bool, payload: bytes) -> DnsOutput:
        """One UDP datagram, or one complete DNS-over-TCP message (no length prefix)."""
        self._conn = conn
        self.payload_bytes += len(payload)
        self._deliver(ts, 1 if is_orig else 0, bytes(payload))
        return self._end()

    def tcp_segment(self, conn: Any, ts: float, is_orig: bool, seq: int, payload: bytes) -> DnsOutput:
        """A TCP segment's payload; ``seq`` is the sequence number of its first byte.

        The first call per direction fixes the stream start, so pass the SYN
        as ``tcp_segment(conn, ts, is_orig, isn + 1, b"")`` when it is seen.
        Retransmitted and overlapping bytes are delivered once; out-of-order
        segments wait (up to MAX_TCP_OUT_OF_ORDER bytes) for the gap to fill.
        """
        self._conn = conn
        d = self._tcp[bool(is_orig)]
        payload = bytes(payload)
        seq &= 0xFFFFFFFF
        if d.next_seq is None:
            d.next_seq = seq
        if not payload:
            return self._end()
        self.payload_bytes += len(payload)
        rel = (seq - d.next_seq) & 0xFFFFFFFF
        if rel >= 0x80000000:                    # starts before next_seq
            behind = 0x100000000 - rel
            if behind >= len(payload):
                return self._end()          # pure retransmission
            payload = payload[behind:]
            rel = 0
        if rel > 0:
            if d.ooo_bytes + len(payload) <= MAX_TCP_OUT_OF_ORDER:
                old = d.out_of_order.get(seq)
                if old is None or len(old) < len(payload):
                    d.ooo_bytes += len(payload) - (len(old) if old else 0)
                    d.out_of_order[seq] = payload
            return self._end()
        self._stream(ts, d, bool(is_orig), payload)
        while d.out_of_order:
            progressed = False
            for s in list(d.out_of_order):
                r = (s - d.next_seq) & 0xFFFFFFFF
                data = d.out_of_order[s]
                if r >= 0x80000000 or r == 0:
                    del d.out_of_order[s]
                    d.ooo_bytes -= len(data)
                    behind = (0x100000000 - r) & 0xFFFFFFFF
                    if behind < len(data):
                        self._stream(ts, d, bool(is_orig), data[behind:])
                        progressed = True
            if not progressed:
                break
        return self._end()

    def tcp_closed(self, conn: Any, ts: float) -> DnsOutput:
        """A FIN or RST was processed (Zeek's ConnectionClosed): parse partial TCP messages.

        Zeek calls this for every closing packet and does not clear the
        partial buffer, so a partial message can be parsed more than once;
        that is reproduced.
        """
        self._conn = conn
        for d in (self._tcp[True], self._tcp[False]):
            if d.buf:
                d.msg_size = 0
                self._deliver(ts, 2, bytes(d.buf))
        return self._end()

    def flush(self, conn: Any, ts: float) -> DnsOutput:
        """The connection is removed (connection_state_remove): log everything still pending."""
        if self._removed:
            return NO_OUTPUT
        self._conn = conn
        self._removed = True
        st = self._state
        if st is not None:
            if st.pending_query is not None:
                self._write(st.pending_query)
            if st.pending_queries is not None:
                self._log_unmatched(st.pending_queries)
            if st.pending_replies is not None:
                self._log_unmatched(st.pending_replies)
        return self._end()

    # --------------------------------------------------------------- TCP framing
    def _stream(self, ts: float, d: _TcpDirection, orig: bool, data: bytes) -> None:
        d.next_seq = (d.next_seq + len(data)) & 0xFFFFFFFF
        i, n = 0, len(data)
        while i < n:
            # Zeek's Contents_DNS::ProcessChunk, state by state.
            if d.state == _LEN_HI:
                d.msg_size = data[i] << 8
                d.state = _LEN_LO
                i += 1
                if i == n:
                    return
            if d.state == _LEN_LO:
                d.msg_size += data[i]
                d.state = _MESSAGE
                d.buf = bytearray()
                i += 1
                if i == n:
                    return
            take = max(0, min(d.msg_size - len(d.buf), n - i))
            d.buf += data[i:i + take]
            i += take
            if len(d.buf) < d.msg_size:
                return
            msg = bytes(d.buf[:d.msg_size])
            d.buf = bytearray()
            d.state = _LEN_HI
            # The direction captured here is used even if this message flips roles.
            self._deliver(ts, 1 if orig else 0, msg)

    # ---------------------------------------------------------- the analyzer
    def _deliver(self, ts: float, is_query: int, data: bytes) -> None:
        """DNS_Interpreter::ParseMessage plus the script handlers for its events."""
        if self.analyzer_disabled or self._removed:
            return
        self.messages += 1
        # Almost every message is plain and read whole in C, header and all; the rest are walked.
        plain = None if self.is_netbios else read_plain(data, self.options)
        if plain is not None:
            header = Header(*plain[0])
        elif len(data) < HEADER_LEN:
            self._weird(ts, "DNS_truncated_len_lt_hdr_len")
            return
        else:
            header = Header.from_bytes(data)
            if not accepted_opcode(header.opcode, self.is_netbios):
                self._weird(ts, "DNS_unknown_opcode", str(header.opcode))
                self.limit_reached = True
                return
        if self._first_message and header.qr and is_query == 1:
            is_query = 0
            if not _zeek_is_multicast(self._conn.resp_h):
                self._flip()
        self._first_message = False

        if plain is not None:
            self._plain_events(ts, header, plain[1], plain[2])
            return
        msg = walk(data, header, is_netbios=self.is_netbios, resp_port=int(self._conn.resp_p),
                   transport=self.proto, server=str(self._conn.resp_h), options=self.options)
        for name, addl in msg.weirds:
            self._weird(ts, name, addl)
        if msg.limit_reached:
            self.limit_reached = True
        if msg.confirmed:
            self.confirmed = True

        h = msg.header
        # event dns_message
        if h.opcode in TRACKED_OPCODES:
            self._set_session(ts, h, not h.qr)
        # question events
        for q in msg.questions:
            if q.event == "dns_request":
                self._dns_request(h, q.name, q.qtype, q.qclass)
            elif q.event == "dns_rejected" and self._dns is not None:
                self._dns.rejected = True
        # RR events, in wire order
        for rr in msg.records:
            if rr.event is None:
                continue
            reply = reply_string(rr, h.opcode, msg.is_netbios)
            if reply is not None:
                self._do_reply(ts, h, rr, reply)
        # event dns_end
        if msg.ended:
            self._dns_end(h)
        if msg.violation and self.payload_bytes <= IGNORE_VIOLATIONS_AFTER:
            # DPD disables the analyzer; analyzer_failed drops a confirmed "dns" service.
            self.analyzer_disabled = True
            self._service_removed = self.confirmed

    def _plain_events(self, ts: float, h: Header, question: tuple, answers: tuple) -> None:
        """_deliver's events for a plain message (message.read_plain), raised from what the C reader
        gave without building the message: a standard query, one question, answers read whole,
        no weird. The walk would raise the same ones (tests/test_dns_wirename.py compares them)."""
        self.confirmed = True
        self._set_session(ts, h, not h.qr)
        if not h.qr:       # a query's answers raise events main.zeek's do_reply ignores
            self._dns_request(h, question[0], question[2], question[3])
        elif answers:
            handled = self.options.handled_events
            for owner, rtype, _rclass, ttl, _rdlength, value in answers:
                if PLAIN_ANSWER_EVENTS[rtype] in handled:
                    reply, address = plain_answer(rtype, value)
                    self._reply(ts, h, owner, reply or None, float(ttl), address)
        elif h.nscount == 0 and h.arcount == 0 and self._dns is not None:
            self._dns.rejected = True       # dns_rejected: a reply with no RRs at all
        self._dns_end(h)

    @property
    def service(self) -> str | None:
        """conn.log service contribution: "dns" when confirmed and not removed."""
        return "dns" if self.confirmed and not self._service_removed else None

    def _flip(self) -> None:
        # The rest of this call writes the swapped orientation; the caller learns it from DnsOutput.flipped.
        self.flips += 1
        self._flipped = True
        c = self._conn
        self._conn = Orientation(c.resp_h, c.resp_p, c.orig_h, c.orig_p)
        self._tcp[True], self._tcp[False] = self._tcp[False], self._tcp[True]

    # ------------------------------------------------------- main.zeek logic
    def _new_session(self, ts: float, trans_id: int) -> Info:
        return Info(ts=ts, trans_id=trans_id)

    def _set_session(self, ts: float, h: Header, is_query: bool) -> None:
        if self._state is None:
            self._state = _State()
        st = self._state
        if is_multicast_subnet(self._conn.resp_h):
            self._dns = self._new_session(ts, h.id)
            self._dns.saw_query = True
            self._dns.saw_reply = True
        elif is_query:
            if st.pending_replies and st.pending_replies.get(h.id):
                self._dns = self._pop(st.pending_replies, h.id)
            else:
                self._dns = self._new_session(ts, h.id)
                if st.pending_query is None:
                    st.pending_query = self._dns
                else:
                    if st.pending_queries is None:
                        st.pending_queries = {}
                    self._enqueue(st.pending_queries, h.id, self._dns)
        else:
            if st.pending_query is not None and st.pending_query.trans_id == h.id:
                self._dns = st.pending_query
                st.pending_query = None
                if st.pending_queries is not None:
                    if st.pending_queries.get(h.id):
                        st.pending_query = self._pop(st.pending_queries, h.id)
                    else:
                        # main.zeek takes "an arbitrary" queue (table order); we take the oldest id.
                        for tid, q in st.pending_queries.items():
                            if q:
                                st.pending_query = self._pop(st.pending_queries, tid)
                                break
            elif st.pending_queries and st.pending_queries.get(h.id):
                self._dns = self._pop(st.pending_queries, h.id)
            else:
                self._dns = self._new_session(ts, h.id)
                if st.pending_replies is None:
                    st.pending_replies = {}
                self._enqueue(st.pending_replies, h.id, self._dns)

        info = self._dns
        if not is_query:
            info.rcode = h.rcode
            info.rcode_name = rcode_name(h.rcode)
            if info.total_answers is None:
                info.total_answers = h.ancount
            if info.total_replies is None:
                info.total_replies = h.ancount + h.arcount + h.nscount
            if h.rcode != 0 and h.qdcount == 0:
                info.rejected = True
        info.opcode = h.opcode
        info.opcode_name = opcode_name(h.opcode, self.is_netbios)

    def _enqueue(self, msgs: dict, tid: int, info: Info) -> None:
        if tid not in msgs:
            if len(msgs) > self.max_pending_query_ids:
                self._log_unmatched(msgs)
            msgs[tid] = []
        elif len(msgs[tid]) > self.max_pending_msgs:
            for i in msgs[tid]:
                self._write(i)
            msgs[tid] = []
        msgs[tid].append(info)

    @staticmethod
    def _pop(msgs: dict, tid: int) -> Info:
        info = msgs[tid].pop(0)
        if not msgs[tid]:
            del msgs[tid]
        return info

    def _log_unmatched(self, msgs: dict) -> None:
        for q in msgs.values():
            for info in q:
                self._write(info)
        msgs.clear()

    def _dns_request(self, h: Header, query: str, qtype: int, qclass: int) -> None:
        if h.opcode not in TRACKED_OPCODES or self._dns is None:
            return
        info = self._dns
        info.RD = h.rd
        info.TC = h.tc
        info.qclass = qclass
        info.qclass_name = qclass_name(qclass)
        info.qtype = qtype
        info.qtype_name = qtype_name(qtype)
        info.Z = h.z
        if self.proto == "udp" and int(self._conn.resp_p) == NETBIOS_PORT:
            decoded = decode_netbios_name(query)
            if decoded:
                query = decoded
            if info.qtype_name == "SRV":
                info.qtype_name = "NBSTAT"   # RFC 1002 4.2.1.3: type 0x21 is NBSTAT there
        info.query = query

    def _do_reply(self, ts: float, h: Header, rr, reply: str) -> None:
        if h.opcode not in TRACKED_OPCODES or not h.qr or rr.section not in LOGGED_SECTIONS:
            return
        address = resolved_address(rr, h.opcode, self.is_netbios) if rr.event in ADDRESS_EVENTS else None
        self._reply(ts, h, rr.name, logged_answer(rr, h.opcode, reply), ttl_seconds(rr), address)

    def _reply(self, ts: float, h: Header, name: str, entry: str | None, ttl: float, address: str | None) -> None:
        """main.zeek's do_reply for one RR of a tracked reply: ``entry`` is its ``answers`` text
        (None: it adds none), ``address`` what it resolved (None: nothing)."""
        info = self._dns
        if info is None:
            return
        if info.query is None:
            info.query = name
        info.AA = h.aa
        info.RA = h.ra
        if info.rtt is None:
            rtt = ts - info.ts
            info.rtt = rtt if rtt != 0 else None
        if entry is not None:
            if info.answers is None:
                info.answers = []
            info.answers.append(entry)
            if info.TTLs is None:
                info.TTLs = []
            info.TTLs.append(ttl)
            if address is not None:
                if info.addresses is None:
                    info.addresses = []
                info.addresses.append(address)

    def _dns_end(self, h: Header) -> None:
        info = self._dns
        if info is None:
            return
        if h.qr:
            info.saw_reply = True
        else:
            info.saw_query = True
        if info.saw_reply and info.saw_query:
            self._write(info)
            self._dns = None

    # ------------------------------------------------------------------ output
    def _write(self, info: Info) -> None:
        if info.addresses is not None:
            self._resolved.append((info.query, tuple(info.addresses)))
        self._rows.append(dns_row(info, self.uid, self._conn, self.proto))

    def _weird(self, ts: float, name: str, addl: str = "") -> None:
        self._weirds.append((ts, name, addl))

    def _end(self) -> DnsOutput:
        """The call's result; the next call starts from nothing."""
        if not (self._rows or self._weirds or self._flipped):
            return NO_OUTPUT
        out = DnsOutput(tuple(self._rows), tuple(self._weirds), tuple(self._resolved), self._flipped)
        self._rows.clear()
        if out.weirds:
            self._weirds.clear()
        if out.resolved:
            self._resolved.clear()
        self._flipped = False
        return out
