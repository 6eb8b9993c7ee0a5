"""Decode ring-buffer events (bpf/cicd_audit.h) into Python objects.

Every event starts with struct ca_event_header, so dispatch is on its type.
A malformed or unknown event is counted by the caller, never guessed at.
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
import struct
from dataclasses import dataclass
from typing import NamedTuple

from cicd_audit.recorder.kernel import abi


@functools.lru_cache(maxsize=65536)     # a session meets the same few addresses again and again
def address_text(raw: bytes) -> str:
    """Zeek's text form of a key address (IPv4-mapped addresses become IPv4)."""
    if raw[:12] == abi.V4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(raw[12:16]))
    return str(ipaddress.IPv6Address(raw))


class ConnId(NamedTuple):
    """Zeek's conn_id: the originator and responder endpoints (a tuple: made for every event)."""

    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    ip_proto: int


# abi.ConnKey read in one step: both addresses, both ports (host order), the protocol.
_KEY = struct.Struct(f"={abi.ConnKey.port.offset}sHHB")
assert abi.ConnKey.ip_proto.offset == abi.ConnKey.port.offset + 4


_new_conn_id = functools.partial(tuple.__new__, ConnId)     # ConnId(...) without its __new__'s frame


def conn_id(key: abi.ConnKey | bytes, orig_slot: int) -> ConnId:
    addrs, port0, port1, ip_proto = _KEY.unpack_from(bytes(key))
    h0, h1 = address_text(addrs[:16]), address_text(addrs[16:])
    if orig_slot:
        return _new_conn_id((h1, port1, h0, port0, ip_proto))
    return _new_conn_id((h0, port0, h1, port1, ip_proto))


def flow_id(key: abi.ConnKey, src_slot: int) -> ConnId:
    """Zeek's id of a flow weird (a packet outside any connection): sender, then receiver, ports 0."""
    packet = conn_id(key, src_slot)
    return ConnId(packet.orig_h, 0, packet.resp_h, 0, packet.ip_proto)


class EventFormatError(ValueError):
    pass


class DnsHead(NamedTuple):
    """A DNS event up to its payload (abi.DnsEventHead), read in one unpack: the most frequent
    event, whose fields the session reads one by one (a ctypes object per field costs more)."""

    ts_ns: int
    key: bytes              # abi.ConnKey's bytes
    conn_id: int
    owner_cgroup_id: int
    orig_slot: int
    from_orig: int
    history_len: int
    tcp_seq: int
    payload_len: int
    captured_len: int


_UNSIGNED_CODES = {abi.c_u8: "B", abi.c_u16: "H", abi.c_u32: "I", abi.c_u64: "Q"}


def _reader(places: list[tuple[int, type]], size: int) -> struct.Struct:
    """A struct format that reads, in order, each (offset, ctypes type) of a ctypes structure of
    `size` bytes: unsigned integers as ints, anything else as its bytes, skipping what lies between.
    Derived from abi.py's mirror, so the layout is declared there alone."""
    fmt, at = "=", 0
    for offset, ctype in places:
        width = ctypes.sizeof(ctype)
        fmt += (f"{offset - at}x" if offset > at else "") + _UNSIGNED_CODES.get(ctype, f"{width}s")
        at = offset + width
    return struct.Struct(fmt + (f"{size - at}x" if size > at else ""))


# DnsHead's fields where abi.DnsEventHead has them: ts_ns in its header, the others by name.
_DNS_TYPES = dict(abi.DnsEventHead._fields_)
_DNS_HEAD = _reader([(abi.DnsEventHead.hdr.offset + abi.EventHeader.ts_ns.offset, dict(abi.EventHeader._fields_)['ts_ns'])] +
                    [(getattr(abi.DnsEventHead, name).offset, _DNS_TYPES[name]) for name in DnsHead._fields[1:]],
                    ctypes.sizeof(abi.DnsEventHead))
_DNS, _DNS_FIXED = abi.EventType.DNS.value, ctypes.sizeof(abi.DnsEventHead)
_CONN_END = abi.EventType.CONN_END.value
_dns_head = functools.partial(tuple.__new__, DnsHead)     # DnsHead._make without its Python frame
_HEADER_SIZE = ctypes.sizeof(abi.EventHeader)
_TYPE = struct.Struct("=I")        # ca_event_header.type, its first field
assert abi.EventHeader.type.offset == 0


def blocked_name(ev: abi.BlockedEvent) -> str:
    """The DNS query name of a BLOCKED event (DNS_NAME), as the kernel wrote it."""
    # The kernel lower-cases and dots the name but does not vet its bytes.
    return bytes(ev.name)[: ev.name_len].decode("ascii", "backslashreplace")


def decode(data: int | bytes, size: int):
    """One event from a ring-buffer record (a pointer from bcc, or bytes): a
    ConnEndEvent, WeirdEvent, ProcessEvent, BlockedEvent, TunnelEvent, Fragment, or (DnsHead, payload)."""
    if type(data) is bytes and len(data) == size:       # a record as RingBuffer hands it over
        buf = data
    elif isinstance(data, int):
        buf = ctypes.string_at(data, size)
    else:
        buf = bytes(data[:size])
    if len(buf) < _HEADER_SIZE:
        raise EventFormatError(f"event of {len(buf)} bytes is shorter than its header")
    (event_type,) = _TYPE.unpack_from(buf)
    if event_type == _DNS:              # the most frequent by far: tested first, then a connection's end
        return _dns(buf)
    if event_type == _CONN_END:
        return _exact(abi.ConnEndEvent, buf)
    if event_type == abi.EventType.WEIRD:
        return _exact(abi.WeirdEvent, buf)
    if event_type == abi.EventType.PROCESS:
        return _exact(abi.ProcessEvent, buf)
    if event_type == abi.EventType.BLOCKED:
        event = _exact(abi.BlockedEvent, buf)
        if event.name_len >= abi.NAME_MAX:
            raise EventFormatError(f"blocked event name of {event.name_len} bytes, at most {abi.NAME_MAX - 1}")
        return event
    if event_type == abi.EventType.FRAGMENT:
        return _fragment(buf)
    if event_type == abi.EventType.TUNNEL:
        return _exact(abi.TunnelEvent, buf)
    raise EventFormatError(f"unknown event type {event_type}")


def _dns(buf: bytes) -> tuple[DnsHead, bytes]:
    if len(buf) < _DNS_FIXED:
        raise EventFormatError(f"DNS event of {len(buf)} bytes is shorter than its fixed part")
    event = _dns_head(_DNS_HEAD.unpack_from(buf))
    payload = buf[_DNS_FIXED:_DNS_FIXED + event.captured_len]
    if len(payload) != event.captured_len:
        raise EventFormatError("DNS event payload is shorter than its captured length")
    return event, payload


@dataclass(frozen=True)
class Fragment:
    """A FRAGMENT event: one IP fragment and the frame it came in."""

    ts_ns: int
    frame: bytes           # the frame from its first byte, as far as it was copied
    l3_off: int            # where its IP header starts
    egress: bool
    sock_cookie: int = 0   # egress: the sending socket's cookie, 0 if none


def _fragment(buf: bytes) -> Fragment:
    fixed = abi.FragmentEvent.frame.offset
    if len(buf) < fixed:
        raise EventFormatError(f"fragment event of {len(buf)} bytes is shorter than its fixed part")
    event = abi.FragmentEvent.from_buffer_copy(buf[:fixed] + bytes(ctypes.sizeof(abi.FragmentEvent) - fixed))
    frame = buf[fixed:fixed + event.captured_len]
    if len(frame) != event.captured_len or event.l3_off >= max(event.captured_len, 1):
        raise EventFormatError("fragment event is shorter than its captured length, or its IP header is outside it")
    return Fragment(event.hdr.ts_ns, frame, event.l3_off, bool(event.egress), event.sock_cookie)


def _exact(struct_type, buf: bytes):
    if len(buf) < ctypes.sizeof(struct_type):
        raise EventFormatError(f"{struct_type.__name__} of {len(buf)} bytes, expected {ctypes.sizeof(struct_type)}")
    return struct_type.from_buffer_copy(buf)
