"""What Zeek's TSV and JSON formats share: single values rendered as Zeek does, each
Zeek type's checks on a Python value, its UTF-8 test, and the checks on a row's fields.

API::

    format_addr(value) -> str          # Zeek's inet_ntop variant; format_addr_text(str) -> bytes, cached
    format_subnet(value) -> str
    format_time(seconds) -> str        # "%.6f" (time/interval)
    format_double(value) -> str        # Zeek's double rendering
    to_bytes, seconds, checked_int, checked_bool, as_elements   # Python value -> what a Zeek type holds
    BAD_CODEPOINTS, hex_escape         # Zeek's UTF-8 check (util.cc check_ok_utf8); \\xHH
    check_fields(schema, names, record); converted(fn, name, value)   # errors that name the field

Rules (Zeek 9.1: util.cc, Desc.cc): time and interval: fixed 6 decimals
(``%.6f``). double: 6 decimals with trailing zeros dropped, ``.0`` added to
integral values, ``inf``/``nan``. addr: inet_ntop, but an IPv4-mapped IPv6
address prints as plain IPv4 and "encapsulated IPv4" forms keep a dotted
quad (``::1.2.3.4``, ``::ffff:0:1.2.3.4``).
"""

from __future__ import annotations

import datetime as _dt
import functools
import ipaddress
import math
import re
from collections.abc import Mapping

from .schema import Schema


def format_time(seconds: float) -> str:
    """time and interval: ``std::to_chars(fixed, 6)``, i.e. ``%.6f``."""
    return f"{seconds:.6f}"


def format_double(d: float) -> str:
    """Zeek's ``ODesc::Add(double, no_exp=true)`` with precision 6."""
    if math.isnan(d):
        return "nan"
    sign = "-" if d < 0 else ""
    a = abs(d)  # -0.0 prints as 0.0 (double_to_str drops its sign)
    if math.isinf(a):
        return sign + "inf"
    s = f"{a:.6f}"
    s = s.rstrip("0")
    if s.endswith("."):
        s = s[:-1]
    s = sign + s
    if abs(d - round(d)) < 1e-9 and "e" not in s:
        s += ".0"
    return s


def _ipv6_words(packed: bytes) -> list[int]:
    return [(packed[i] << 8) | packed[i + 1] for i in range(0, 16, 2)]


@functools.lru_cache(maxsize=65536)
def format_addr_text(text: str) -> bytes:
    return format_addr(text).encode()


def format_addr(value) -> str:
    """Render an address as Zeek does (its inet_ntop variant)."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii")
    if isinstance(value, str):
        value = ipaddress.ip_address(value.strip())
    if isinstance(value, ipaddress.IPv4Address):
        return str(value)
    if not isinstance(value, ipaddress.IPv6Address):
        raise TypeError(f"not an address: {value!r}")
    if value.ipv4_mapped is not None:  # Zeek stores IPv4 this way
        return str(value.ipv4_mapped)
    if value.scope_id:
        raise ValueError(f"Zeek addresses carry no scope id: {str(value)!r}")
    words = _ipv6_words(value.packed)
    # longest run of zero words (first one on ties), at least 2 long
    best_base, best_len, cur_base, cur_len = -1, 0, -1, 0
    for i, w in enumerate(words):
        if w == 0:
            if cur_base == -1:
                cur_base, cur_len = i, 1
            else:
                cur_len += 1
        elif cur_base != -1:
            if best_base == -1 or cur_len > best_len:
                best_base, best_len = cur_base, cur_len
            cur_base = -1
    if cur_base != -1 and (best_base == -1 or cur_len > best_len):
        best_base, best_len = cur_base, cur_len
    if best_base != -1 and best_len < 2:
        best_base = -1
    out = []
    i = 0
    while i < 8:
        if best_base != -1 and best_base <= i < best_base + best_len:
            if i == best_base:
                out.append(":")
            i += 1
            continue
        if i != 0:
            out.append(":")
        if i == 6 and best_base == 0 and (
            best_len == 6
            or (best_len == 7 and words[7] != 1)
            or (best_len == 5 and words[5] == 0xFFFF)
            or (best_len == 4 and words[4] == 0xFFFF and words[5] == 0)
        ):
            out.append(str(ipaddress.IPv4Address(value.packed[12:])))
            break
        out.append(f"{words[i]:x}")
        i += 1
    else:
        if best_base != -1 and best_base + best_len == 8:
            out.append(":")
    return "".join(out)


def format_subnet(value) -> str:
    net = ipaddress.ip_network(value, strict=False) if not isinstance(
        value, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else value
    return "%s/%d" % (format_addr(net.network_address), net.prefixlen)


# Code points Zeek's UTF-8 check refuses (util.cc check_ok_utf8).
BAD_CODEPOINTS = re.compile("[\x00-\x1f\x7f-\x9f\ue000-\uf8ff\ufff0-\uffff]")


def hex_escape(m) -> bytes:
    return b"\\x%02x" % m.group()[0]


def to_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass")
    raise TypeError(f"expected str or bytes, got {type(value).__name__}")


def seconds(v) -> float:
    if isinstance(v, bool):
        raise TypeError("bool is not a time")
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            raise TypeError("naive datetime: give an aware one or epoch seconds")
        return v.timestamp()
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if hasattr(v, "to_pydatetime"):  # pandas Timestamp
        return seconds(v.to_pydatetime())
    return float(v)


def checked_int(v, lo: int, hi: int, tname: str) -> int:
    if isinstance(v, bool) or isinstance(v, float):
        raise TypeError(f"{tname} expects an integer, got {v!r}")
    i = int(v)  # accepts numpy integers
    if not lo <= i <= hi:
        raise ValueError(f"{tname} out of range: {v!r}")
    return i


def checked_bool(v) -> bool:
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return bool(v)
    raise TypeError(f"bool expects True/False, got {v!r}")


def as_elements(v) -> list:
    if isinstance(v, (str, bytes, bytearray)) or not hasattr(v, "__iter__"):
        raise TypeError(f"set/vector expects a list, tuple or set, got {v!r}")
    return list(v)


def check_fields(schema: Schema, names: frozenset, record: Mapping) -> None:
    if names.issuperset(record):
        return
    unknown = [k for k in record if k not in names]
    if unknown:
        raise ValueError("{}.log has no field(s) {}".format(schema.path, ", ".join(map(repr, unknown))))


def converted(fn, name, v):
    try:
        return fn(v)
    except (TypeError, ValueError) as e:
        raise type(e)(f"field {name!r}: {e}") from None
