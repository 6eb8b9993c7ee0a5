"""Decode ring-buffer events (bpf/cicd_audit.h) into Python objects.

Every event starts with struct ca_event_header, so dispatch is on its type.
A malformed or unknown event is counted by the caller, never guessed at.
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
from dataclasses import dataclass

from cicd_audit.recorder.kernel import abi


@functools.lru_cache(maxsize=65536)     # a session meets the same few addresses again and again
def address_text(raw: bytes) -> str:
    """Zeek's text form of a key address (IPv4-mapped addresses become IPv4)."""
    if raw[:12] == abi.V4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(raw[12:16]))
    return str(ipaddress.IPv6Address(raw))


@dataclass(frozen=True)
class ConnId:
    """Zeek's conn_id: the originator and responder endpoints."""

    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    ip_proto: int


def conn_id(key: abi.ConnKey, orig_slot: int) -> ConnId:
    resp_slot = orig_slot ^ 1
    return ConnId(
        orig_h=address_text(bytes(key.addr[orig_slot])),
        orig_p=key.port[orig_slot],
        resp_h=address_text(bytes(key.addr[resp_slot])),
        resp_p=key.port[resp_slot],
        ip_proto=key.ip_proto,
    )


class EventFormatError(ValueError):
    pass


# A DNS event's fixed part is read into a whole DnsEvent; the payload comes from the record itself.
_DNS, _DNS_FIXED = abi.EventType.DNS.value, abi.DnsEvent.payload.offset
_DNS_PAYLOAD_ROOM = bytes(ctypes.sizeof(abi.DnsEvent) - _DNS_FIXED)


def blocked_name(ev: abi.BlockedEvent) -> str:
    """The DNS query name of a BLOCKED event (DNS_NAME), as the kernel wrote it."""
    # The kernel lower-cases and dots the name but does not vet its bytes.
    return bytes(ev.name)[: ev.name_len].decode("ascii", "backslashreplace")


def decode(data: int | bytes, size: int):
    """One event from a ring-buffer record (a pointer from bcc, or bytes): a
    ConnEndEvent, WeirdEvent, ProcessEvent, BlockedEvent, TunnelEvent, Fragment, or (DnsEvent, payload)."""
    if isinstance(data, int):
        buf = ctypes.string_at(data, size)
    else:
        buf = data if type(data) is bytes and len(data) == size else bytes(data[:size])
    if len(buf) < ctypes.sizeof(abi.EventHeader):
        raise EventFormatError(f"event of {len(buf)} bytes is shorter than its header")
    header = abi.EventHeader.from_buffer_copy(buf)
    if header.type == _DNS:             # the most frequent by far: tested first
        return _dns(buf)
    if header.type == abi.EventType.CONN_END:
        return _exact(abi.ConnEndEvent, buf)
    if header.type == abi.EventType.WEIRD:
        return _exact(abi.WeirdEvent, buf)
    if header.type == abi.EventType.PROCESS:
        return _exact(abi.ProcessEvent, buf)
    if header.type == abi.EventType.BLOCKED:
        event = _exact(abi.BlockedEvent, buf)
        if event.name_len >= abi.NAME_MAX:
            raise EventFormatError(f"blocked event name of {event.name_len} bytes, at most {abi.NAME_MAX - 1}")
        return event
    if header.type == abi.EventType.FRAGMENT:
        return _fragment(buf)
    if header.type == abi.EventType.TUNNEL:
        return _exact(abi.TunnelEvent, buf)
    raise EventFormatError(f"unknown event type {header.type}")


def _dns(buf: bytes) -> tuple[abi.DnsEvent, bytes]:
    if len(buf) < _DNS_FIXED:
        raise EventFormatError(f"DNS event of {len(buf)} bytes is shorter than its fixed part")
    event = abi.DnsEvent.from_buffer_copy(buf[:_DNS_FIXED] + _DNS_PAYLOAD_ROOM)
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
