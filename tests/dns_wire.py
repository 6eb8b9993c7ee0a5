"""Tiny DNS wire-format builder for the dns tests (raw bytes, no compression unless asked)."""

from __future__ import annotations

import struct


def name(s: str) -> bytes:
    """Uncompressed wire name; "" or "." is the root."""
    out = b""
    for label in s.strip(".").split(".") if s.strip(".") else []:
        b = label.encode("utf-8", "surrogateescape")
        out += bytes([len(b)]) + b
    return out + b"\0"


def question(qname: str, qtype: int = 1, qclass: int = 1) -> bytes:
    return name(qname) + struct.pack(">HH", qtype, qclass)


def rr(owner, rtype: int, rdata: bytes, ttl: int = 300, rclass: int = 1) -> bytes:
    """An RR; ``owner`` is a str (encoded) or raw bytes (e.g. a pointer b'\\xc0\\x0c')."""
    own = owner if isinstance(owner, bytes) else name(owner)
    return own + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def header(id=0x1234, qr=False, opcode=0, aa=False, tc=False, rd=False, ra=False, z=0, rcode=0,
           qd=0, an=0, ns=0, ar=0) -> bytes:
    flags = (qr << 15) | (opcode << 11) | (aa << 10) | (tc << 9) | (rd << 8) | (ra << 7) | (z << 4) | rcode
    return struct.pack(">HHHHHH", id, flags, qd, an, ns, ar)


def message(questions=(), answers=(), authority=(), additional=(), **flags) -> bytes:
    """A message whose counts match the sections given (override with qd=/an=/ns=/ar=)."""
    counts = dict(qd=len(questions), an=len(answers), ns=len(authority), ar=len(additional))
    counts.update({k: flags.pop(k) for k in list(flags) if k in counts})
    return header(**flags, **counts) + b"".join(questions) + b"".join(answers) + \
        b"".join(authority) + b"".join(additional)


def query(qname: str, qtype: int = 1, id=0x1234, **flags) -> bytes:
    return message([question(qname, qtype)], id=id, rd=flags.pop("rd", True), **flags)


def reply(qname: str, answers=(), qtype: int = 1, id=0x1234, **flags) -> bytes:
    flags.setdefault("ra", True)
    flags.setdefault("rd", True)
    return message([question(qname, qtype)], list(answers), id=id, qr=True, **flags)
