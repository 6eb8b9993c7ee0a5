"""Zeek's JSON log format (``LogAscii::use_json=T``): one row as one JSON object per line.

API::

    format_json_row(schema, record) -> bytes      # one line, with the newline
    format_json_double(value) -> str              # rapidjson's shortest round-trip form

Rules (Zeek 9.1: threading/formatters/JSON.cc, util.cc): no header lines; one
compact object per line in field order; unset fields omitted; time and
interval and double as JSON numbers in shortest round-trip form (rapidjson
style: ``60.0``, ``0.0000123``, ``1.79e308``; inf/nan as ``null``),
count/port/int as integers, sets/vectors as arrays. Strings: printable ASCII
and valid UTF-8 kept; if the string holds a control byte other than \\b \\f
\\n \\r \\t or invalid UTF-8, every non-ASCII/control byte (except those five)
becomes the text ``\\xHH``, which JSON then writes as ``\\\\xHH``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Callable

from .formatting import (
    BAD_CODEPOINTS,
    as_elements,
    check_fields,
    checked_bool,
    checked_int,
    converted,
    format_addr,
    format_subnet,
    hex_escape,
    seconds,
    to_bytes,
)
from .schema import Schema, parse_type


def _escape_json_text(data: bytes) -> str:
    """util::escape_utf8(ESCAPE_UNPRINTABLE_CONTROLS), decoded for json.dumps."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        if not BAD_CODEPOINTS.search(text.translate(_JSON_OK_CONTROLS)):
            return text
    return _JSON_HEX.sub(hex_escape, data).decode("ascii")


# \b \f \n \r \t pass through escape_utf8 unescaped in JSON mode
_JSON_OK_CONTROLS = {c: None for c in (8, 9, 10, 12, 13)}
_JSON_HEX = re.compile(rb"[^\x20-\x7e\x08\x09\x0a\x0c\x0d]")


def _json_atomic(t: str) -> Callable[[object], object]:
    if t in ("string", "enum", "file", "func", "pattern"):
        return lambda v: _escape_json_text(to_bytes(v))
    if t in ("time", "interval"):
        return lambda v: _JsonDouble(seconds(v))
    if t == "double":
        return lambda v: _JsonDouble(float(v))
    if t == "count":
        return lambda v: checked_int(v, 0, 2**64 - 1, "count")
    if t == "int":
        return lambda v: checked_int(v, -(2**63), 2**63 - 1, "int")
    if t == "port":
        return lambda v: checked_int(v, 0, 65535, "port")
    if t == "bool":
        return checked_bool
    if t == "addr":
        return format_addr
    if t == "subnet":
        return format_subnet
    raise ValueError(f"unsupported type {t}")


def _json_field(ftype: str) -> Callable[[object], object]:
    container, element = parse_type(ftype)
    atom = _json_atomic(element)
    if container is None:
        return atom
    return lambda v: [None if e is None else atom(e) for e in as_elements(v)]


class _JsonDouble(float):
    """A float that json.dumps writes the way rapidjson's Writer::Double does."""


def format_json_double(d: float) -> str:
    """rapidjson's shortest round-trip form (Grisu2 digits, Prettify layout).

    Python's repr gives the shortest digits; rapidjson's Grisu2 agrees for
    practically every double. Layout: ``60.0``, ``0.0001``, ``1e30``,
    ``1.79e308``, ``2.23e-308``; inf/nan are written as ``null`` by Zeek.
    """
    if math.isnan(d) or math.isinf(d):
        return "null"
    if d == 0:
        return "-0.0" if math.copysign(1.0, d) < 0 else "0.0"
    sign = "-" if d < 0 else ""
    r = repr(abs(d))
    mant, _, exp = r.partition("e")
    e = int(exp) if exp else 0
    ip, _, fp = mant.partition(".")
    if fp == "0":
        fp = ""
    digits = (ip + fp).lstrip("0")
    # value = 0.digits... shift: decimal exponent k so that value = digits * 10**k
    k = e - len(fp)
    if not digits:
        digits = "0"
    # strip trailing zeros of digits into k
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k
    if 0 <= k and kk <= 21:
        s = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        s = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        s = "0." + "0" * (-kk) + digits
    elif kk < -324:
        s = "0.0"
    elif length == 1:
        s = digits + "e" + str(kk - 1)
    else:
        s = digits[0] + "." + digits[1:] + "e" + str(kk - 1)
    return sign + s


_JSON_STR = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json_dump(obj) -> str:
    # Compact, non-ASCII kept raw (rapidjson writes UTF-8 unescaped).
    if isinstance(obj, _JsonDouble):
        return format_json_double(float(obj))
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, str):
        return _JSON_STR.encode(obj)
    if isinstance(obj, list):
        return "[" + ",".join(_json_dump(x) for x in obj) + "]"
    raise TypeError(obj)


class _JsonRow:
    """A schema's field names, their JSON keys, and one converter per field, made once per schema."""
    __slots__ = ("names", "nameset", "fields", "keys")

    def __init__(self, schema: Schema):
        self.names = schema.names
        self.nameset = frozenset(self.names)
        self.fields = [_json_field(f.type) for f in schema.fields]
        self.keys = [_JSON_STR.encode(n) + ":" for n in self.names]


_row_format = functools.cache(_JsonRow)     # one per schema, made on its first row


def format_json_row(schema: Schema, record: Mapping[str, object]) -> bytes:
    """One JSON line (with its newline) for ``record``; unset fields omitted."""
    c = _row_format(schema)
    check_fields(schema, c.nameset, record)
    get = record.get
    parts = []
    for name, key, fn in zip(c.names, c.keys, c.fields):
        v = get(name)
        if v is None:
            continue
        parts.append(key + _json_dump(converted(fn, name, v)))
    return ("{" + ",".join(parts) + "}\n").encode("utf-8", "surrogatepass")
