"""A UDP connection's one lookup, logged without building the connection's DNS analyzer.

Almost every DNS connection a job makes is one lookup from a new port: a plain
query (``message.read_plain`` reads it whole in C: opcode QUERY, one question,
nothing for the walk), then its plain reply with the same transaction id, the
roles unchanged. main.zeek pairs the two through ``pending_query`` and writes
one row at the reply's dns_end. :class:`PlainPair` holds the query (its fields
and the message itself) and, at the matching reply, gives that row at once:
what :class:`~.log.DnsConnectionLog` gives for the same two messages, without
its state, the messages' events or its per-call bookkeeping.

Whatever else the connection carries (a message after the pair, a reply that
is not the query's, a change of roles, the connection's end before a reply),
``message`` returns None and ``handover`` replays the messages held into a
DnsConnectionLog, which goes on as if it had read them all along.
tests/test_dns_plain_pair.py checks that both give the same logs.
"""

from __future__ import annotations

from typing import Any

from .log import (
    NO_OUTPUT,
    DnsConnectionLog,
    DnsOutput,
    Info,
    dns_row,
    is_multicast_subnet,
)
from .message import NETBIOS_PORT, PLAIN_ANSWER_EVENTS, ParseOptions, read_plain
from .names import opcode_name, qclass_name, qtype_name, rcode_name
from .render import plain_answer

# A message as the connection's log is given it: (conn, ts, is_orig, payload).
_Message = tuple


class PlainPair:
    """A UDP connection whose DNS messages so far are one plain query, then maybe its plain reply.

    Quacks as DnsConnectionLog where a connection's end asks (``uid``,
    ``service``, ``limit_reached``, ``flush``)."""

    __slots__ = ("uid", "options", "_info", "_messages", "_answered")

    limit_reached = False      # a plain message reaches none of the parser's limits
    service = "dns"            # and confirms the analyzer

    def __init__(self, uid: str, options: ParseOptions, info: Info, query: _Message):
        self.uid = uid
        self.options = options
        self._info = info
        self._messages = [query]
        self._answered = False

    @classmethod
    def start(cls, uid: str, conn: Any, ts: float, is_orig: bool, payload: bytes,
              options: ParseOptions) -> PlainPair | None:
        """The pair for a UDP connection's first DNS message, or None when it is not a plain
        query (a reply first, NetBIOS, a multicast destination's per-message rows, the walk)."""
        if NETBIOS_PORT in (conn.orig_p, conn.resp_p):
            return None
        plain = read_plain(payload, options)
        if plain is None or plain[0][1] or is_multicast_subnet(conn.resp_h):
            return None
        (trans_id, _qr, opcode, _aa, tc, rd, _ra, z, *_), (query, _original, qtype, qclass), _ = plain
        # main.zeek's set_session (a new DNS::Info, the pending query), then dns_request's fields.
        info = Info(ts=ts, trans_id=trans_id, query=query, qclass=qclass, qclass_name=qclass_name(qclass),
                    qtype=qtype, qtype_name=qtype_name(qtype), TC=tc, RD=rd, Z=z, saw_query=True)
        info.opcode, info.opcode_name = opcode, opcode_name(opcode, False)
        return cls(uid, options, info, (conn, ts, is_orig, payload))

    def message(self, conn: Any, ts: float, is_orig: bool, payload: bytes) -> DnsOutput | None:
        """The query's reply: its row; None for anything else (then ``handover``). ``conn`` must
        be the orientation the query came with (the caller hands over when the roles changed)."""
        if self._answered:
            return None
        plain = read_plain(payload, self.options)
        if plain is None:
            return None
        h, _question, answers = plain
        trans_id, qr, opcode, aa, _tc, _rd, ra, _z, _ad, _cd, rcode, _qd, ancount, nscount, arcount = h
        info = self._info
        if not qr or trans_id != info.trans_id:
            return None
        self._messages.append((conn, ts, is_orig, payload))
        self._answered = True
        info.rcode, info.rcode_name = rcode, rcode_name(rcode)
        info.total_answers, info.total_replies = ancount, ancount + arcount + nscount
        info.opcode, info.opcode_name = opcode, opcode_name(opcode, False)
        info.saw_reply = True
        handled = self.options.handled_events
        resolved = ()
        if answers:
            for owner, rtype, _rclass, ttl, _rdlength, value in answers:
                if PLAIN_ANSWER_EVENTS[rtype] in handled:
                    self._reply(info, ts, aa, ra, owner, ttl, *plain_answer(rtype, value))
            if info.addresses is not None:
                resolved = ((info.query, tuple(info.addresses)),)
        elif nscount == 0 and arcount == 0:
            info.rejected = True        # dns_rejected: a reply with no RRs at all
        return DnsOutput((dns_row(info, self.uid, conn, "udp"),), (), resolved)

    @staticmethod
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

    def handover(self) -> DnsConnectionLog:
        """The connection's log, given the messages held (their output was given already)."""
        first_conn = self._messages[0][0]
        log = DnsConnectionLog(self.uid, first_conn, "udp", options=self.options)
        for conn, ts, is_orig, payload in self._messages:
            log.message(conn, ts, is_orig, payload)
        return log

    def flush(self, conn: Any, ts: float) -> DnsOutput:
        """The connection ended: an answered pair has nothing left; a query alone is written as
        main.zeek writes a pending query."""
        if self._answered:
            return NO_OUTPUT
        return self.handover().flush(conn, ts)
