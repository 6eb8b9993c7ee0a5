"""Write Zeek logs exactly as Zeek's ASCII writer does (TSV or JSON lines).

API::

    LogWriter(directory, schema, fmt="tsv" | "json", open_time=None,
              flush_interval=1.0, max_buffer=65536, opener=None, on_failure=None,
              reserve=0)
        .write(record: Mapping[str, object]) -> None
        .flush() -> None
        .close(close_time=None) -> None          # also via ``with``
        .rotate(rename) -> str | None            # #close, renamed <path>.<open time>.log, a new file in its place
        .size, .opened                           # bytes in the current file (and pending); when it was opened
        .path                                    # <directory>/<schema.path>.log
        .rows                                    # rows written so far
        .failure, .lost_rows                     # why writing stopped (e.g. disk full), rows not written
    format_tsv_row(schema, record) -> bytes       # one line, with the newline
    tsv_header(schema, open_time=None) -> bytes   # the 8 header lines
    format_json_row(schema, record) -> bytes      # one line, with the newline
    format_addr(value) -> str                     # Zeek's rendering of an address
    format_time(seconds) -> str                   # "%.6f" as Zeek (time/interval)
    format_double(value) -> str                   # Zeek's double rendering
    keep_room(fd, offset, length) -> int          # allocate disk space past a file's end; 0 or errno

Python values per Zeek type: time = float epoch seconds (or aware datetime),
interval = float seconds (or timedelta), count/int = int, port = int,
addr = str or ipaddress object, subnet = str or ip_network, bool = bool,
enum/string = str (or bytes for raw data), set/vector = list/tuple/set/frozenset.
A missing key or None is unset (``-``); an empty string or container is
``(empty)``. Unknown keys raise ValueError, wrong types TypeError.

Format rules (learned from Zeek 9.1: logging/writers/ascii/Ascii.cc,
threading/formatters/Ascii.cc and JSON.cc, util.cc, Desc.cc):

* TSV header: ``#separator \\x09`` (a space, not a tab, after the key), then
  ``#set_separator``, ``#empty_field``, ``#unset_field``, ``#path``, ``#open``,
  ``#fields``, ``#types`` with a tab after the key. ``#open``/``#close`` are the
  wall clock at open/close in *local* time (``localtime_r``, so TZ applies),
  formatted ``%Y-%m-%d-%H-%M-%S``. ``#close`` is written when the file closes.
* time and interval: fixed 6 decimals (``%.6f``). double: 6 decimals with
  trailing zeros dropped, ``.0`` added to integral values, ``inf``/``nan``.
* bool: ``T``/``F``. port: the number only. addr: inet_ntop, but an
  IPv4-mapped IPv6 address prints as plain IPv4 and "encapsulated IPv4" forms
  keep a dotted quad (``::1.2.3.4``, ``::ffff:0:1.2.3.4``).
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
* JSON (``LogAscii::use_json=T``): no header lines; one compact object per line
  in field order; unset fields omitted; time and interval and double as JSON
  numbers in shortest round-trip form (rapidjson style: ``60.0``,
  ``0.0000123``, ``1.79e308``; inf/nan as ``null``), count/port/int as
  integers, sets/vectors as arrays. Strings: printable ASCII and valid UTF-8
  kept; if the string holds a control byte other than \\b \\f \\n \\r \\t or
  invalid UTF-8, every non-ASCII/control byte (except those five) becomes the
  text ``\\xHH``, which JSON then writes as ``\\\\xHH``.

Rows are buffered and written as whole lines with one ``os.write`` each flush
(at most ``flush_interval`` seconds or ``max_buffer`` bytes after a row), so a
reader of a live file only ever sees complete lines.
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import ipaddress
import json
import math
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Callable

from .schema import Schema, parse_type

__all__ = [
    "LogWriter",
    "keep_room",
    "format_addr",
    "format_double",
    "format_json_row",
    "format_time",
    "format_tsv_row",
    "open_close_timestamp",
    "tsv_header",
]

SEPARATOR = b"\t"
# fallocate(2) modes (linux/falloc.h): allocate or free blocks without changing the file's size.
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
# Room for "#close\t2026-12-05-07-30-46\n" that rows never use (see LogWriter's reserve).
_CLOSE_ROOM = 64
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
SET_SEPARATOR = b","
EMPTY_FIELD = b"(empty)"
UNSET_FIELD = b"-"

# --------------------------------------------------------------------------
# disk space held in reserve


@functools.lru_cache(maxsize=1)
def _fallocate():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    func = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if func is not None:
        func.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    return func


def keep_room(fd: int, offset: int, length: int, release: bool = False) -> int:
    """Allocate (or, with release, free) the blocks of [offset, offset+length) without changing
    the file's size, so a later write there succeeds on a full disk. Returns 0, or the errno:
    ENOSPC/EDQUOT when the disk is full, EOPNOTSUPP where the file system cannot."""
    func = _fallocate()
    if func is None:
        return errno.EOPNOTSUPP
    if length <= 0:
        return 0
    import ctypes
    mode = _FALLOC_FL_KEEP_SIZE | (_FALLOC_FL_PUNCH_HOLE if release else 0)
    return 0 if func(fd, mode, offset, length) == 0 else ctypes.get_errno()




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
def _format_addr_text(text: str) -> bytes:
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


# --------------------------------------------------------------------------
# string escaping

_PLAIN_ASCII = re.compile(rb"[^\x20-\x5b\x5d-\x7e]")  # anything but printable, no backslash
_PLAIN_TEXT = re.compile(r"[^\x20-\x5b\x5d-\x7e]")  # the same test for a str
_NON_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
# Code points Zeek's UTF-8 check refuses (util.cc check_ok_utf8).
_BAD_CODEPOINTS = re.compile("[\x00-\x1f\x7f-\x9f\ue000-\uf8ff\ufff0-\uffff]")


def _hex_all(m) -> bytes:
    return b"\\x%02x" % m.group()[0]


def _escape_utf8_piece(piece: bytes) -> bytes:
    """util::escape_utf8 with both control-escaping flags (TSV)."""
    if not _NON_PRINTABLE.search(piece):
        return piece
    try:
        ok = not _BAD_CODEPOINTS.search(piece.decode("utf-8"))
    except UnicodeDecodeError:
        ok = False
    return piece if ok else _NON_PRINTABLE.sub(_hex_all, piece)


_SPLIT_TOP = re.compile(rb"([\\\t])")
_SPLIT_IN_SET = re.compile(rb"([\\\t,])")
_ESCAPED_SEP = {b"\\": b"\\\\", b"\t": b"\\x09", b",": b"\\x2c"}


def _to_bytes(value) -> bytes:
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


def _escape_json_text(data: bytes) -> str:
    """util::escape_utf8(ESCAPE_UNPRINTABLE_CONTROLS), decoded for json.dumps."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        if not _BAD_CODEPOINTS.search(text.translate(_JSON_OK_CONTROLS)):
            return text
    return _JSON_HEX.sub(_hex_all, data).decode("ascii")


# \b \f \n \r \t pass through escape_utf8 unescaped in JSON mode
_JSON_OK_CONTROLS = {c: None for c in (8, 9, 10, 12, 13)}
_JSON_HEX = re.compile(rb"[^\x20-\x7e\x08\x09\x0a\x0c\x0d]")


# --------------------------------------------------------------------------
# per-type converters: value -> bytes (TSV) or JSON-able Python value


def _num_seconds(v) -> float:
    if isinstance(v, bool):
        raise TypeError("bool is not a time")
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            raise TypeError("naive datetime: give an aware one or epoch seconds")
        return v.timestamp()
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if hasattr(v, "to_pydatetime"):  # pandas Timestamp
        return _num_seconds(v.to_pydatetime())
    return float(v)


def _int(v, lo: int, hi: int, tname: str) -> int:
    if isinstance(v, bool) or isinstance(v, float):
        raise TypeError(f"{tname} expects an integer, got {v!r}")
    i = int(v)  # accepts numpy integers
    if not lo <= i <= hi:
        raise ValueError(f"{tname} out of range: {v!r}")
    return i


def _bool(v) -> bool:
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return bool(v)
    raise TypeError(f"bool expects True/False, got {v!r}")


def _tsv_atomic(t: str) -> Callable[[object, bool], bytes]:
    if t in ("string", "enum", "file", "func", "pattern"):
        return lambda v, c: escape_tsv_string(_to_bytes(v), c)
    if t in ("time", "interval"):
        return lambda v, c: (b"%.6f" % _num_seconds(v))
    if t == "double":
        return lambda v, c: format_double(float(v)).encode()
    if t == "count":
        return lambda v, c: b"%d" % _int(v, 0, 2**64 - 1, "count")
    if t == "int":
        return lambda v, c: b"%d" % _int(v, -(2**63), 2**63 - 1, "int")
    if t == "port":
        return lambda v, c: b"%d" % _int(v, 0, 65535, "port")
    if t == "bool":
        return lambda v, c: b"T" if _bool(v) else b"F"
    if t == "addr":
        return lambda v, c: format_addr(v).encode()
    if t == "subnet":
        return lambda v, c: format_subnet(v).encode()
    raise ValueError(f"unsupported type {t}")


def _json_atomic(t: str) -> Callable[[object], object]:
    if t in ("string", "enum", "file", "func", "pattern"):
        return lambda v: _escape_json_text(_to_bytes(v))
    if t in ("time", "interval"):
        return lambda v: _JsonDouble(_num_seconds(v))
    if t == "double":
        return lambda v: _JsonDouble(float(v))
    if t == "count":
        return lambda v: _int(v, 0, 2**64 - 1, "count")
    if t == "int":
        return lambda v: _int(v, -(2**63), 2**63 - 1, "int")
    if t == "port":
        return lambda v: _int(v, 0, 65535, "port")
    if t == "bool":
        return _bool
    if t == "addr":
        return format_addr
    if t == "subnet":
        return format_subnet
    raise ValueError(f"unsupported type {t}")


def _as_elements(v) -> list:
    if isinstance(v, (str, bytes, bytearray)) or not hasattr(v, "__iter__"):
        raise TypeError(f"set/vector expects a list, tuple or set, got {v!r}")
    return list(v)


def _tsv_scalar(t: str) -> Callable[[object], bytes]:
    """A single value of type t; the common Python types take a fast path, the rest _tsv_atomic's checks."""
    atom = _tsv_atomic(t)
    if t in ("string", "enum"):
        def string(v):
            if type(v) is str and _PLAIN_TEXT.search(v) is None and v not in ("-", "(empty)"):
                return v.encode() if v else EMPTY_FIELD
            return atom(v, False)
        return string
    if t in ("time", "interval"):
        return lambda v: b"%.6f" % v if type(v) is float else atom(v, False)
    if t in ("count", "port"):
        top = 65535 if t == "port" else 2**64 - 1
        return lambda v: b"%d" % v if type(v) is int and 0 <= v <= top else atom(v, False)
    if t == "addr":
        return lambda v: _format_addr_text(v) if type(v) is str else atom(v, False)
    return lambda v: atom(v, False)


def _tsv_field(ftype: str) -> Callable[[object], bytes]:
    container, element = parse_type(ftype)
    atom = _tsv_atomic(element)
    if container is None:
        return _tsv_scalar(element)

    def fmt(v) -> bytes:
        elems = _as_elements(v)
        if not elems:
            return EMPTY_FIELD
        return SET_SEPARATOR.join(UNSET_FIELD if e is None else atom(e, True) for e in elems)

    return fmt


def _json_field(ftype: str) -> Callable[[object], object]:
    container, element = parse_type(ftype)
    atom = _json_atomic(element)
    if container is None:
        return atom
    return lambda v: [None if e is None else atom(e) for e in _as_elements(v)]


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


# --------------------------------------------------------------------------
# rows


class _Compiled:
    __slots__ = ("names", "tsv", "json", "nameset", "json_keys")

    def __init__(self, schema: Schema):
        self.names = schema.names
        self.nameset = frozenset(self.names)
        self.tsv = [_tsv_field(f.type) for f in schema.fields]
        self.json = [_json_field(f.type) for f in schema.fields]
        self.json_keys = [_JSON_STR.encode(n) + ":" for n in self.names]


_COMPILED: dict = {}


def _compiled(schema: Schema) -> _Compiled:
    c = _COMPILED.get(schema)
    if c is None:
        c = _COMPILED[schema] = _Compiled(schema)
    return c


def _check_keys(c: _Compiled, schema: Schema, record: Mapping) -> None:
    unknown = [k for k in record if k not in c.nameset]
    if unknown:
        raise ValueError("{}.log has no field(s) {}".format(schema.path, ", ".join(map(repr, unknown))))


def _convert(fn, name, v):
    try:
        return fn(v)
    except (TypeError, ValueError) as e:
        raise type(e)(f"field {name!r}: {e}") from None


def format_tsv_row(schema: Schema, record: Mapping[str, object]) -> bytes:
    """One TSV data line (with its newline) for ``record``."""
    c = _compiled(schema)
    _check_keys(c, schema, record)
    get = record.get
    try:
        vals = [UNSET_FIELD if (v := get(name)) is None else fn(v) for name, fn in zip(c.names, c.tsv)]
    except (TypeError, ValueError):
        # Again field by field, to name the one that failed.
        vals = [UNSET_FIELD if (v := get(name)) is None else _convert(fn, name, v) for name, fn in zip(c.names, c.tsv)]
    line = SEPARATOR.join(vals)
    if line[:1] == b"#":
        line = b"\\x23" + line[1:]
    return line + b"\n"


def format_json_row(schema: Schema, record: Mapping[str, object]) -> bytes:
    """One JSON line (with its newline) for ``record``; unset fields omitted."""
    c = _compiled(schema)
    _check_keys(c, schema, record)
    get = record.get
    parts = []
    for name, key, fn in zip(c.names, c.json_keys, c.json):
        v = get(name)
        if v is None:
            continue
        parts.append(key + _json_dump(_convert(fn, name, v)))
    return ("{" + ",".join(parts) + "}\n").encode("utf-8", "surrogatepass")


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


class LogWriter:
    """Write one Zeek log file, ``<directory>/<schema.path>.log``.

    Use as a context manager. ``write()`` is thread-safe. Rows reach the file
    as whole lines at least every ``flush_interval`` seconds (checked on each
    write; call ``flush()`` from a timer if rows can stop arriving) or when
    ``max_buffer`` bytes are pending; ``flush_interval=0`` writes every row at
    once.

    ``opener(file_name) -> fd`` creates the file (default: create or truncate
    the path); the recorder passes one that never follows or reuses a file.

    ``rotate(rename)`` ends the file as Zeek's log rotation does: ``#close``,
    then ``rename(name, rotated_name(open time))`` (the caller's: it may pick
    another free name, and returns the one it used), and a new file with its
    own header in its place.

    When the file cannot be written (disk full, quota, I/O error) the file is
    cut back to its last complete line, ``failure`` says why, later rows are
    counted in ``lost_rows`` instead of written, and ``on_failure(writer)`` is
    called once. Nothing raises: the log stays valid, only shorter, and
    ``close()`` still tries to write ``#close``.

    With ``reserve`` > 0, the disk space for each write and for the ``#close``
    line after it is allocated before the write (fallocate), and a write that
    cannot get it is refused as "disk full" before anything is written: so
    ``#close`` still fits when something else fills the disk. The first
    ``reserve`` bytes after the header are allocated at open (for a log that
    writes little and late, such as capture_stats.log). What is held past the
    end is freed at close. File systems without fallocate write as before.
    """

    def __init__(
        self,
        directory,
        schema: Schema,
        fmt: str = "tsv",
        open_time: float | None = None,
        flush_interval: float = 1.0,
        max_buffer: int = 65536,
        opener: Callable[[str], int] | None = None,
        on_failure: Callable[[LogWriter], None] | None = None,
        reserve: int = 0,
    ):
        if fmt not in ("tsv", "json"):
            raise ValueError(f"fmt must be 'tsv' or 'json', not {fmt!r}")
        self.schema = schema
        self.fmt = fmt
        self.path = os.path.join(os.fspath(directory), schema.path + ".log")
        self.rows = 0
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._buf: list[bytes] = []
        self._buf_len = 0
        self._buf_rows = 0
        self.failure: str | None = None
        self.lost_rows = 0
        self._on_failure = on_failure
        self._reserve = reserve
        self._lock = threading.Lock()
        self._format = format_tsv_row if fmt == "tsv" else format_json_row
        self._opener = opener
        self._fd: int | None = None
        self._open(open_time)

    def _open(self, open_time: float | None) -> None:
        """Create the file and write its header (see the class for reserve)."""
        name = self.schema.path + ".log"
        if self._opener is not None:
            self._fd = self._opener(name)
        else:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        self.open_time = time.time() if open_time is None else open_time
        self.opened = self._last_flush = time.monotonic()
        self._complete = 0          # bytes in the file that end on a whole line
        try:
            header = tsv_header(self.schema, self.open_time) if self.fmt == "tsv" else b""
            if self._reserve:
                try:
                    self._room_for(len(header) + self._reserve)
                except OSError as exc:
                    self._failed(exc, 0)
            self._write_all(header)
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise

    # -- context manager
    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def size(self) -> int:
        """Bytes of the current file, with the rows still pending."""
        return self._complete + self._buf_len

    def rotated_name(self) -> str:
        """Zeek's default name for a rotated log: <path>.<its #open time>.log."""
        return f"{self.schema.path}.{open_close_timestamp(self.open_time)}.log"

    def rotate(self, rename: Callable[[str, str], str], close_time: float | None = None) -> str | None:
        """End this file and go on in a new one (see the class). Returns the rotated file's name;
        None, and nothing done, when the log is closed or has failed (its file stays as it is)."""
        with self._lock:
            if self._fd is None or self.failure is not None:
                return None
            self._close_locked(close_time)
            rotated = rename(self.schema.path + ".log", self.rotated_name())
            self._open(close_time)
            return rotated

    def _write_all(self, data: bytes, rows: int = 0) -> None:
        """Write whole lines; on failure cut the file back to its last whole line (see the class)."""
        if self.failure is not None:
            self.lost_rows += rows
            return
        try:
            self._room_for(len(data) + _CLOSE_ROOM)
        except OSError as exc:
            self._failed(exc, rows)
            return
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self._cut_back()
            self._failed(exc, rows)
            return
        self._complete += len(data)

    def _room_for(self, length: int) -> None:
        """Allocate the next `length` bytes (see the class); raises ENOSPC when the disk is full."""
        if self._reserve and self._fd is not None:
            err = keep_room(self._fd, self._complete, length)
            if err in _DISK_FULL:
                raise OSError(err, os.strerror(err))

    def _failed(self, exc: OSError, rows: int) -> None:
        self.failure = f"{exc.strerror} (errno {exc.errno})"
        self.lost_rows += rows
        if self._on_failure is not None:
            self._on_failure(self)

    def _cut_back(self) -> None:
        """No half row stays behind."""
        try:
            os.ftruncate(self._fd, self._complete)
        except OSError:
            pass

    def _write_close_line(self, line: bytes) -> None:
        """#close, also after a failure (the rows are lost, the file still ends as Zeek's do):
        into the room every write left for it, whole or not at all."""
        try:
            if os.pwrite(self._fd, line, self._complete) != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            self._cut_back()
            if self.failure is None:
                self._failed(exc, 0)
            return
        self._complete += len(line)

    def write(self, record: Mapping[str, object]) -> None:
        """Format and queue one row; raises on unknown fields or bad values
        (nothing is written for a bad row)."""
        line = self._format(self.schema, record)
        with self._lock:
            if self._fd is None:
                raise ValueError(f"write to closed log {self.path}")
            self._buf.append(line)
            self._buf_len += len(line)
            self.rows += 1
            self._buf_rows += 1
            if (
                self._buf_len >= self._max_buffer
                or time.monotonic() - self._last_flush >= self._flush_interval
            ):
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self._buf:
            data, rows = b"".join(self._buf), self._buf_rows
            self._buf.clear()
            self._buf_len = self._buf_rows = 0
            self._write_all(data, rows)
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        """Write pending rows (whole lines) to the file."""
        with self._lock:
            if self._fd is not None:
                self._flush_locked()

    def close(self, close_time: float | None = None) -> None:
        """Flush, write ``#close`` (TSV) and close. Idempotent."""
        with self._lock:
            if self._fd is not None:
                self._close_locked(close_time)

    def _close_locked(self, close_time: float | None) -> None:
        try:
            self._flush_locked()
            if self.fmt == "tsv":
                self._write_close_line((f"#close\t{open_close_timestamp(close_time)}\n").encode())
        finally:
            if self._reserve:         # what was held past the end (tmpfs would keep it)
                keep_room(self._fd, self._complete, self._reserve + _CLOSE_ROOM, release=True)
            os.close(self._fd)
            self._fd = None

    def __del__(self):  # pragma: no cover - safety net only
        try:
            if getattr(self, "_fd", None) is not None:
                self.close()
        except Exception:
            pass
