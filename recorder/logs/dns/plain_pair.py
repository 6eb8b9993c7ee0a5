"""A UDP connection's lookups, logged without building the connection's DNS analyzer.

Almost every DNS connection a job makes is one lookup from a new port, or a
few in a row from one: a plain query (``message.read_plain`` reads it whole
in C: opcode QUERY, one question, nothing for the walk), then its plain reply
with the same transaction id, the roles unchanged. main.zeek pairs the two
through ``pending_query`` and writes one row at the reply's dns_end, after
which nothing is pending, just as before the query. :class:`PlainPair` holds
the query (the message and what read_plain read of it) and, at the matching
reply, gives that row at once (``lookup_row``, in C when _lookup_row.c is
built): what :class:`~.log.DnsConnectionLog` gives for the same messages,
without its state, the messages' events or its per-call bookkeeping. The next
plain query starts the next pair.

Whatever else the connection carries (a reply that is not the pending query's,
a second query before the reply, a change of roles, a walked message, the
connection's end before a reply), ``message`` returns None and ``handover``
gives a DnsConnectionLog in the state those lookups left, with the pending
query replayed into it; it goes on as if it had read every message.
tests/test_dns_plain_pair.py checks that both give the same logs.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from cicd_audit import compiled

from .log import (
    NO_OUTPUT,
    DnsConnectionLog,
    DnsOutput,
    Info,
    dns_row,
    is_multicast_subnet,
)
from .message import NETBIOS_PORT, PLAIN_ANSWER_EVENTS, ParseOptions, read_plain
from .names import CLASSES, OPCODES, QUERY_TYPES, RCODES, opcode_name, qclass_name, qtype_name, rcode_name
from .render import plain_answer

# The pending query: (conn, ts, is_orig, payload) as the connection's log is given a message, then
# what read_plain read of it.
_Query = tuple


def _lookup_row(query: tuple, query_ts: float, reply: tuple, ts: float, uid: str, conn: Any,
                answer_types: frozenset) -> tuple | None:
    """The dns.log row of a plain query and its plain reply (read_plain's tuples), as main.zeek
    writes it at the reply's dns_end, and the addresses it resolved (None if none); None when the
    reply is not that query's (not a reply, or another transaction id). ``answer_types``: the
    answer types whose reply event a loaded script handles. The reference of _lookup_row.c."""
    (trans_id, _qr, _opcode, _aa, tc, rd, _ra, z, *_), (name, _original, qtype, qclass), _ = query
    h, _question, answers = reply
    reply_id, qr, opcode, aa, _tc, _rd, ra, _z, _ad, _cd, rcode, _qd, _ancount, nscount, arcount = h
    if not qr or reply_id != trans_id:
        return None
    # main.zeek's set_session (a new DNS::Info, the pending query), then dns_request's fields.
    info = Info(ts=query_ts, trans_id=trans_id, query=name, qclass=qclass, qclass_name=qclass_name(qclass),
                qtype=qtype, qtype_name=qtype_name(qtype), TC=tc, RD=rd, Z=z, saw_query=True)
    # The reply's: dns_end's opcode, rcode, and each answer's reply event (do_reply).
    info.rcode, info.rcode_name = rcode, rcode_name(rcode)
    info.opcode, info.opcode_name = opcode, opcode_name(opcode, False)
    if answers:
        for owner, rtype, _rclass, ttl, _rdlength, value in answers:
            if rtype in answer_types:
                _reply(info, ts, aa, ra, owner, ttl, *plain_answer(rtype, value))
    elif nscount == 0 and arcount == 0:
        info.rejected = True        # dns_rejected: a reply with no RRs at all
    addresses = tuple(info.addresses) if info.addresses is not None else None
    return dns_row(info, uid, conn, "udp"), addresses


def _reply(info: Info, ts: float, aa: bool, ra: bool, owner: str, ttl: int, reply: str,
           address: str | None) -> None:
    # main.zeek's do_reply, as DnsConnectionLog._reply does it for a plain answer.
    info.AA, info.RA = aa, ra
    if info.rtt is None:
        rtt = ts - info.ts
        info.rtt = rtt if rtt != 0 else None
    if reply:
        if info.answers is None:
            info.answers, info.TTLs = [], []
        info.answers.append(reply)
        info.TTLs.append(float(ttl))
        if address is not None:
            if info.addresses is None:
                info.addresses = []
            info.addresses.append(address)


_output = functools.partial(tuple.__new__, DnsOutput)      # a DnsOutput of all four, without __new__'s frame


@functools.lru_cache(maxsize=16)
def _answer_types(handled_events: frozenset) -> frozenset:
    """The answer types of a plain message whose reply event a loaded script handles."""
    return frozenset(rtype for rtype, event in PLAIN_ANSWER_EVENTS.items() if event in handled_events)


_compiled = compiled.load("cicd_audit.recorder.logs.dns._lookup_row", Path(__file__).with_name("_lookup_row.c"))
if _compiled is not None:
    _compiled.configure(((CLASSES, qclass_name), (QUERY_TYPES, qtype_name), (RCODES, rcode_name),
                         (OPCODES, opcode_name)), plain_answer)
lookup_row = _compiled.lookup_row if _compiled is not None else _lookup_row


class PlainPair:
    """A UDP connection whose DNS messages so far are plain lookups: queries, each followed by its
    plain reply, the last one perhaps still waiting for it.

    Quacks as DnsConnectionLog where a connection's end asks (``uid``,
    ``service``, ``limit_reached``, ``flush``)."""

    __slots__ = ("uid", "options", "_conn", "_query", "_messages", "_payload_bytes")

    limit_reached = False      # a plain message reaches none of the parser's limits
    service = "dns"            # and confirms the analyzer

    def __init__(self, uid: str, options: ParseOptions, conn: Any):
        self.uid = uid
        self.options = options
        self._conn = conn                   # the orientation of the first message: decides NetBIOS
        self._query: _Query | None = None   # the pending query
        self._messages = 0                  # messages of the lookups written
        self._payload_bytes = 0

    @classmethod
    def start(cls, uid: str, conn: Any, ts: float, is_orig: bool, payload: bytes,
              options: ParseOptions) -> PlainPair | None:
        """The pair for a UDP connection's first DNS message, or None when it is not a plain
        query (a reply first, NetBIOS, a multicast destination's per-message rows, the walk)."""
        if NETBIOS_PORT in (conn.orig_p, conn.resp_p) or is_multicast_subnet(conn.resp_h):
            return None
        pair = cls(uid, options, conn)
        return pair if pair._query_taken(conn, ts, is_orig, payload) else None

    def _query_taken(self, conn: Any, ts: float, is_orig: bool, payload: bytes) -> bool:
        plain = read_plain(payload, self.options)
        if plain is None or plain[0][1]:
            return False
        self._query = (conn, ts, is_orig, payload, plain)
        return True

    def message(self, conn: Any, ts: float, is_orig: bool, payload: bytes) -> DnsOutput | None:
        """The pending query's reply: its row; with none pending, the next plain query: no row yet.
        None for anything else (then ``handover``). ``conn`` must be the orientation the first
        query came with (the caller hands over when the roles changed)."""
        query = self._query
        if query is None:
            return NO_OUTPUT if self._query_taken(conn, ts, is_orig, payload) else None
        plain = read_plain(payload, self.options)
        if plain is None:
            return None
        written = lookup_row(query[4], query[1], plain, ts, self.uid, conn,
                             _answer_types(self.options.handled_events))
        if written is None:
            return None
        row, addresses = written
        self._messages += 2
        self._payload_bytes += len(query[3]) + len(payload)
        self._query = None
        return _output(((row,), (), ((row["query"], addresses),) if addresses is not None else (), False))

    def handover(self) -> DnsConnectionLog:
        """The connection's log as the lookups so far left it, the pending query given to it (its
        output was given already: none)."""
        if self._messages:
            log = DnsConnectionLog.after_lookups(self.uid, self._conn, "udp", options=self.options,
                                                 messages=self._messages, payload_bytes=self._payload_bytes)
        else:
            log = DnsConnectionLog(self.uid, self._conn, "udp", options=self.options)
        if self._query is not None:
            log.message(*self._query[:4])
        return log

    def flush(self, conn: Any, ts: float) -> DnsOutput:
        """The connection ended: with no query pending nothing is left; a pending query is
        written as main.zeek writes one."""
        if self._query is None:
            return NO_OUTPUT
        return self.handover().flush(conn, ts)
