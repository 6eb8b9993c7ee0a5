"""The compiled lookup row (recorder/logs/dns/_lookup_row.c) is plain_pair.py's reference's.

lookup_row builds a plain lookup's dns.log row from what read_plain read of
its query and its reply; the reference builds main.zeek's DNS::Info and gives
log.dns_row's row. Both must give the same (row, addresses), compared by repr
(key order, and a TTL of 30 is not one of 30.0), or both None: for every
query and reply of the pair's test sequences and the whole-message reader's
edge replies, under 12 of the 32 sets of handled answer types; and for
random messages read by the C reader, under all 32: ids equal or not,
queries and replies either way, every flag, no answers with and without
authority or additional records, the five answer types, unhandled ones,
codes the name tables lack, a reply at the query's time.
"""

from __future__ import annotations

import itertools
import random

import pytest
from dns_wire import message, question, rr
from test_dns_plain_pair import sequences
from test_dns_wirename import plain_edges

from cicd_audit.recorder.logs.dns import plain_pair
from cicd_audit.recorder.logs.dns.log import Orientation
from cicd_audit.recorder.logs.dns.message import read_plain
from cicd_audit.recorder.logs.dns.wire import ParseOptions
from cicd_audit.recorder.logs.events import ConnId

OPTIONS = ParseOptions()
CONNS = (Orientation("10.0.0.1", 40000, "10.0.0.2", 53), ConnId("2001:db8::1", 5300, "2001:db8::35", 53, 17))
ANSWER_TYPE_SETS = [frozenset(s) for n in range(6) for s in itertools.combinations((1, 28, 2, 5, 12), n)]


def test_the_compiled_row_is_the_one_in_use_here():
    assert plain_pair._compiled is not None and plain_pair.lookup_row is plain_pair._compiled.lookup_row


def both(query, query_ts, reply, ts, conn, answer_types):
    args = (query, query_ts, reply, ts, "Cuid", conn, answer_types)
    expected = plain_pair._lookup_row(*args)
    got = plain_pair._compiled.lookup_row(*args)
    assert repr(got) == repr(expected), (query, reply, sorted(answer_types))
    return got


def plain_messages() -> list:
    payloads = [p for _, messages, _ in sequences() for _, _, _, p in messages] + plain_edges()
    read = [read_plain(p, OPTIONS) for p in dict.fromkeys(payloads)]
    return [m for m in read if m is not None]


def test_every_query_and_reply_of_the_sequences_gives_the_references_row():
    messages = plain_messages()
    queries = [m for m in messages if not m[0][1]]
    replies = [m for m in messages if m[0][1]]
    assert len(queries) >= 5 and len(replies) >= 20
    rows = 0
    for query, reply in itertools.product(queries, replies + queries[:2]):
        for answer_types in ANSWER_TYPE_SETS[::3] + [ANSWER_TYPE_SETS[-1]]:
            rows += both(query, 1.0, reply, 1.25, CONNS[0], answer_types) is not None
    assert rows > 100


def random_name(rng: random.Random) -> str:
    return ".".join(rng.choice(["www", "Example", "cdn", "a" * rng.randrange(1, 40), "x-1"])
                    for _ in range(rng.randrange(1, 4)))


def random_answer(rng: random.Random) -> bytes:
    rtype = rng.choice((1, 1, 28, 2, 5, 12))
    owner = b"\xc0\x0c" if rng.random() < 0.7 else random_name(rng)
    if rtype == 1:
        rdata = bytes(rng.randrange(256) for _ in range(4))
    elif rtype == 28:
        rdata = bytes(rng.randrange(256) for _ in range(16)) if rng.random() < 0.7 else \
            bytes(10) + b"\xff\xff" + bytes(rng.randrange(256) for _ in range(4))
    else:
        rdata = b"".join(bytes([len(label)]) + label.encode() for label in random_name(rng).split(".")) + b"\0"
    return rr(owner, rtype, rdata, ttl=rng.choice((0, 1, 30, 2**31, 2**32 - 1, rng.getrandbits(32))))


def random_message(rng: random.Random, qr: bool, trans_id: int) -> bytes:
    answers = [random_answer(rng) for _ in range(rng.choice((0, 0, 1, 1, 2, 5)))] if qr else []
    extra = rng.random() < 0.3
    return message([question(random_name(rng), rng.choice((1, 28, 5, 16, 65280)), rng.choice((1, 1, 3, 65000)))], answers,
                   [random_answer(rng)] if extra and rng.random() < 0.5 else (),
                   id=trans_id, qr=qr, aa=rng.random() < 0.5, tc=rng.random() < 0.2, rd=rng.random() < 0.7,
                   ra=rng.random() < 0.7, z=rng.choice((0, 0, 1, 7)), rcode=rng.choice((0, 0, 2, 3, 5, 15)),
                   ns=1 if extra else 0)


def test_random_lookups_give_the_references_row():
    rng = random.Random(20261208)
    rows = declined = 0
    for _ in range(4000):
        trans_id = rng.getrandbits(16)
        query = read_plain(random_message(rng, rng.random() < 0.05, trans_id), OPTIONS)
        reply_id = trans_id if rng.random() < 0.9 else rng.getrandbits(16)
        reply = read_plain(random_message(rng, rng.random() < 0.95, reply_id), OPTIONS)
        if query is None or reply is None:
            continue
        query_ts = rng.choice((0.0, 1.5, 1_700_000_000.123456))
        ts = query_ts + rng.choice((0.0, 0.0004, 1e-9, 3.0))
        got = both(query, query_ts, reply, ts, rng.choice(CONNS), rng.choice(ANSWER_TYPE_SETS))
        rows += got is not None
        declined += got is None
    assert rows > 2500 and declined > 100


def test_what_is_not_read_plains_shape_is_refused():
    query = read_plain(message([question("a.example")], id=7), OPTIONS)
    reply = read_plain(message([question("a.example")], [rr(b"\xc0\x0c", 1, b"\1\2\3\4")], id=7, qr=True), OPTIONS)
    lookup_row = plain_pair._compiled.lookup_row
    assert lookup_row(query, 1.0, reply, 2.0, "C1", CONNS[0], frozenset({1}))[1] == ("1.2.3.4",)
    for bad in [(query[0],), (query[0][:-1], query[1], query[2]), (query[0], query[1][:3], query[2])]:
        with pytest.raises(TypeError):
            lookup_row(bad, 1.0, reply, 2.0, "C1", CONNS[0], frozenset({1}))
    with pytest.raises(TypeError):
        lookup_row(query, 1.0, (reply[0], reply[1], list(reply[2])), 2.0, "C1", CONNS[0], frozenset({1}))
    with pytest.raises(TypeError):
        lookup_row(query, 1.0, (reply[0], reply[1], ((1, 2),)), 2.0, "C1", CONNS[0], frozenset({1}))
    with pytest.raises(TypeError):
        lookup_row(query, 1.0, reply, 2.0, "C1", CONNS[0], [1])
    with pytest.raises(TypeError):
        lookup_row(query, 1.0, reply, 2.0, "C1", CONNS[0])
    with pytest.raises(AttributeError):
        lookup_row(query, 1.0, reply, 2.0, "C1", ("10.0.0.1", 1, "10.0.0.2", 53), frozenset({1}))
