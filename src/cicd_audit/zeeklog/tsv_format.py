"""Zeek's TSV log format: the header lines, and one row as one line.

API::

    format_tsv_row(schema, record) -> bytes       # one line, with the newline
    tsv_header(schema, open_time=None) -> bytes   # the 8 header lines
    open_close_timestamp(t=None) -> str           # #open/#close: local time
    escape_tsv_string(data, in_container=False) -> bytes

Rules (Zeek 9.1: logging/writers/ascii/Ascii.cc, threading/formatters/Ascii.cc, util.cc):

* Header: ``#separator \\x09`` (a space, not a tab, after the key), then
  ``#set_separator``, ``#empty_field``, ``#unset_field``, ``#path``, ``#open``,
  ``#fields``, ``#types`` with a tab after the key. ``#open``/``#close`` are the
  wall clock at open/close in *local* time (``localtime_r``, so TZ applies),
  formatted ``%Y-%m-%d-%H-%M-%S``. ``#close`` is written when the file closes.
* bool: ``T``/``F``. port: the number only. Other atoms: see formatting.py.
* strings (UTF-8 mode, Zeek's default ``LogAscii::enable_utf_8=T``): a
  backslash becomes ``\\\\``, the tab separator ``\\x09``, inside a set/vector
  the set separator ``\\x2c``. The pieces between those are kept as they are if
  every byte is printable ASCII or valid UTF-8 outside the control, C1,
  private-use (U+E000-U+F8FF) and U+FFF0-U+FFFF ranges; otherwise *every*
  byte of that piece outside printable ASCII becomes ``\\xHH`` (lower-case hex),
  including the bytes of valid multi-byte characters in it.
* a string equal to ``-`` is written ``\\x2d``, one equal to ``(empty)`` is
  ``\\x28empty)``, an empty string is ``(empty)`` (also as a set element).
* a line that would start with ``#`` gets its first byte written ``\\x23``.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

from cicd_audit import compiled

from .formatting import (
    BAD_CODEPOINTS,
    as_elements,
    check_fields,
    checked_bool,
    checked_int,
    converted,
    format_addr,
    format_addr_text,
    format_double,
    format_subnet,
    hex_escape,
    seconds,
    to_bytes,
)
from .schema import Schema, parse_type

SEPARATOR = b"\t"
SET_SEPARATOR = b","
EMPTY_FIELD = b"(empty)"
UNSET_FIELD = b"-"

# The row loop in C (_tsvrow.c) when it is built; this module's converters are its reference.
_compiled = compiled.load("cicd_audit.zeeklog._tsvrow", Path(__file__).with_name("_tsvrow.c"))

_PLAIN_ASCII = re.compile(rb"[^\x20-\x5b\x5d-\x7e]")  # anything but printable, no backslash
_PLAIN_TEXT = re.compile(r"[^\x20-\x5b\x5d-\x7e]")  # the same test for a str
_PLAIN_ELEMENT = re.compile(r"[^\x20-\x2b\x2d-\x5b\x5d-\x7e]")  # and no set separator, inside a set or vector
_NON_PRINTABLE = re.compile(rb"[^\x20-\x7e]")


def _escape_utf8_piece(piece: bytes) -> bytes:
    """util::escape_utf8 with both control-escaping flags (TSV)."""
    if not _NON_PRINTABLE.search(piece):
        return piece
    try:
        ok = not BAD_CODEPOINTS.search(piece.decode("utf-8"))
    except UnicodeDecodeError:
        ok = False
    return piece if ok else _NON_PRINTABLE.sub(hex_escape, piece)


_SPLIT_TOP = re.compile(rb"([\\\t])")
_SPLIT_IN_SET = re.compile(rb"([\\\t,])")
_ESCAPED_SEP = {b"\\": b"\\\\", b"\t": b"\\x09", b",": b"\\x2c"}


def escape_tsv_string(data: bytes, in_container: bool = False) -> bytes:
    """One string value as Zeek's ASCII formatter writes it (UTF-8 mode)."""
    if not data:
        return EMPTY_FIELD
    if data == UNSET_FIELD:
        return b"\\x2d"
    if data == EMPTY_FIELD:
        return b"\\x28empty)"
    if not _PLAIN_ASCII.search(data) and not (in_container and b"," in data):
        return data
    parts = (_SPLIT_IN_SET if in_container else _SPLIT_TOP).split(data)
    out = []
    for i, p in enumerate(parts):
        if i % 2:
            out.append(_ESCAPED_SEP[p])
        elif p:
            out.append(_escape_utf8_piece(p))
    return b"".join(out)


def _tsv_atomic(t: str) -> Callable[[object, bool], bytes]:
    if t in ("string", "enum", "file", "func", "pattern"):
        return lambda v, c: escape_tsv_string(to_bytes(v), c)
    if t in ("time", "interval"):
        return lambda v, c: (b"%.6f" % seconds(v))
    if t == "double":
        return lambda v, c: format_double(float(v)).encode()
    if t == "count":
        return lambda v, c: b"%d" % checked_int(v, 0, 2**64 - 1, "count")
    if t == "int":
        return lambda v, c: b"%d" % checked_int(v, -(2**63), 2**63 - 1, "int")
    if t == "port":
        return lambda v, c: b"%d" % checked_int(v, 0, 65535, "port")
    if t == "bool":
        return lambda v, c: b"T" if checked_bool(v) else b"F"
    if t == "addr":
        return lambda v, c: format_addr(v).encode()
    if t == "subnet":
        return lambda v, c: format_subnet(v).encode()
    raise ValueError(f"unsupported type {t}")


def _tsv_scalar(t: str, in_container: bool = False) -> Callable[[object], bytes]:
    """A single value of type t, or one element of a set or vector (where the set separator is escaped
    too); the common Python types take a fast path, the rest _tsv_atomic's checks."""
    atom = _tsv_atomic(t)
    if t in ("string", "enum"):
        plain = _PLAIN_ELEMENT if in_container else _PLAIN_TEXT

        def string(v):
            if type(v) is str and v and plain.search(v) is None and v not in ("-", "(empty)"):
                return v.encode()
            return atom(v, in_container)
        return string
    if t in ("time", "interval"):
        return lambda v: b"%.6f" % v if type(v) is float else atom(v, in_container)
    if t in ("count", "port"):
        top = 65535 if t == "port" else 2**64 - 1
        return lambda v: b"%d" % v if type(v) is int and 0 <= v <= top else atom(v, in_container)
    if t == "addr":
        return lambda v: format_addr_text(v) if type(v) is str else atom(v, in_container)
    return lambda v: atom(v, in_container)


def _tsv_field(ftype: str) -> Callable[[object], bytes]:
    container, element = parse_type(ftype)
    if container is None:
        return _tsv_scalar(element)
    one = _tsv_scalar(element, in_container=True)

    def fmt(v) -> bytes:
        elems = v if type(v) is list or type(v) is tuple else as_elements(v)
        if not elems:
            return EMPTY_FIELD
        return SET_SEPARATOR.join([UNSET_FIELD if e is None else one(e) for e in elems])

    return fmt


# The values _tsvrow.c writes itself, by field type (its KIND_* numbers): those _tsv_scalar's fast
# paths take, bool, and an IPv4 address's text in its canonical form.
_COMPILED_KINDS = {} if _compiled is None else {
    "string": _compiled.KIND_STRING, "enum": _compiled.KIND_STRING, "time": _compiled.KIND_TIME,
    "interval": _compiled.KIND_TIME, "count": _compiled.KIND_COUNT, "port": _compiled.KIND_PORT,
    "bool": _compiled.KIND_BOOL, "addr": _compiled.KIND_ADDR}


def _compiled_kind(ftype: str) -> int:
    container, element = parse_type(ftype)
    kind = _COMPILED_KINDS.get(element, 0)
    return kind | _compiled.KIND_CONTAINER if container is not None and kind else kind


class _TsvRow:
    """A schema's field names and one converter per field, made once per schema."""
    __slots__ = ("names", "nameset", "fields", "kinds")

    def __init__(self, schema: Schema):
        self.names = tuple(schema.names)
        self.nameset = frozenset(self.names)
        self.fields = tuple(_tsv_field(f.type) for f in schema.fields)
        self.kinds = bytes(_compiled_kind(f.type) for f in schema.fields)


_row_format = functools.cache(_TsvRow)     # one per schema, made on its first row


def format_tsv_row(schema: Schema, record: Mapping[str, object]) -> bytes:
    """One TSV data line (with its newline) for ``record``."""
    c = _row_format(schema)
    if _compiled is not None and type(record) is dict:
        try:
            return _compiled.tsv_line(c.names, c.kinds, c.fields, record)    # checks the keys too
        except (TypeError, ValueError):
            pass        # the check and the loop below raise it again, naming the key or the field
    check_fields(schema, c.nameset, record)
    return _python_tsv_row(c, record)


def compiled_tsv_row(schema: Schema) -> Callable[[dict], bytes] | None:
    """The compiled row loop bound to ``schema``'s fields (None without it): a row in one C call,
    for a writer's many rows of one schema. It raises TypeError or ValueError for a record that is
    no dict of the schema's fields, without naming what is wrong: format_tsv_row does that."""
    if _compiled is None:
        return None
    c = _row_format(schema)
    return functools.partial(_compiled.tsv_line, c.names, c.kinds, c.fields)


def _python_tsv_row(c: _TsvRow, record: Mapping[str, object]) -> bytes:
    get = record.get
    try:
        vals = [UNSET_FIELD if (v := get(name)) is None else fn(v) for name, fn in zip(c.names, c.fields)]
    except (TypeError, ValueError):
        # Again field by field, to name the one that failed.
        vals = [UNSET_FIELD if (v := get(name)) is None else converted(fn, name, v) for name, fn in zip(c.names, c.fields)]
    line = SEPARATOR.join(vals)
    if line[:1] == b"#":
        line = b"\\x23" + line[1:]
    return line + b"\n"


def open_close_timestamp(t: float | None = None) -> str:
    """``#open``/``#close`` value: local time, ``%Y-%m-%d-%H-%M-%S`` (as Zeek's
    ``localtime_r``; seconds truncated). ``None`` means now."""
    if t is None:
        t = time.time()
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(int(t)))


def tsv_header(schema: Schema, open_time: float | None = None) -> bytes:
    lines = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\t" + schema.path,
        "#open\t" + open_close_timestamp(open_time),
        "#fields\t" + "\t".join(schema.names),
        "#types\t" + "\t".join(schema.types),
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")
