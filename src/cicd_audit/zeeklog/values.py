"""Zeek ASCII values to Python values: escapes, atoms, sets and vectors.

API::

    unescape(text, errors) -> str             # Zeek's \\xHH and \\\\ escapes
    unescape_header(text) -> str              # the same for header values (bytes kept)
    field_parser(ztype, name, header, errors) -> (text -> Python value)
    bad_value(name, ztype, text) -> ValueError

Shared by the record reader and the column converters, so both give the
same values and the same messages.
"""

from __future__ import annotations

import re

from .header import LogHeader
from .schema import parse_type

_UNESC_B = re.compile(rb"\\(?:\\|x([0-9a-fA-F]{2}))")


def _unesc_repl(m) -> bytes:
    h = m.group(1)
    return b"\\" if h is None else bytes((int(h, 16),))


def unescape(text: str, errors: str = "backslashreplace") -> str:
    """Decode Zeek's ASCII escapes (``\\xHH``, ``\\\\``) in one value."""
    if "\\" not in text:
        return text
    raw = _UNESC_B.sub(_unesc_repl, text.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", errors)


def bad_value(name, ztype, text):
    return ValueError(f"column {name} ({ztype}): bad value {text!r}")


def _atom_parser(ztype: str, name: str, errors: str, empty_field: str):
    """text -> Python value for one atomic (non-unset) value."""
    if ztype in ("time", "interval", "double"):

        def p(t):
            try:
                return float(t)
            except ValueError:
                raise bad_value(name, ztype, t) from None

        return p
    if ztype in ("count", "int", "port"):
        lo, hi = {"count": (0, 2**64 - 1), "int": (-(2**63), 2**63 - 1), "port": (0, 65535)}[ztype]

        def p(t):
            try:
                v = int(t)
            except ValueError:
                raise bad_value(name, ztype, t) from None
            if not lo <= v <= hi:
                raise bad_value(name, ztype, t)
            return v

        return p
    if ztype == "bool":

        def p(t):
            if t == "T":
                return True
            if t == "F":
                return False
            raise bad_value(name, ztype, t)

        return p
    # addr, subnet, string, enum, pattern, ...
    return lambda t: "" if t == empty_field else unescape(t, errors)


def field_parser(ztype: str, name: str, hdr: LogHeader, errors: str):
    container, element = parse_type(ztype)
    atom = _atom_parser(element, name, errors, hdr.empty_field)
    unset, empty, sset = hdr.unset_field, hdr.empty_field, hdr.set_separator
    if container is None:
        return lambda t: None if t == unset else atom(t)

    def p(t):
        if t == unset:
            return None
        if t == empty:
            return []
        return [None if e == unset else atom(e) for e in t.split(sset)]

    return p


def unescape_header(v: str) -> str:
    return _UNESC_B.sub(_unesc_repl, v.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
