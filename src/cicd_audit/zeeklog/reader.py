"""Read Zeek logs (ours or real Zeek's) into Python records or pandas.

API::

    read_log(path, schema=None, errors="backslashreplace")
        -> (LogHeader, iterator of dict)      # TSV or JSON lines, plain or .gz
    read_dataframe(path, schema=None, errors="backslashreplace") -> DataFrame
    load_logs(*session_dirs, errors="backslashreplace") -> LoadedLogs
        # LoadedLogs(conn, dns, weird, capture_stats, notice): one DataFrame each
    LogHeader(path, fields, types, separator, set_separator, empty_field,
              unset_field, open, close, format, meta)   # .schema
    LogFormatError(InputError)                # .filename, .lineno

Nothing here imports bcc: the analyzers and notebooks use it anywhere pandas
runs.

The header comes from the file itself (``#fields``/``#types``), so any Zeek
version's columns are read. JSON logs have no header: their types come from
``schema`` or the packaged schema named by the file (``dns.log`` -> dns);
keys the schema lacks are kept with their JSON values.

Values. ``read_log`` yields one dict per row with every header field, holding
the Python values the writer accepts: time/interval/double -> float seconds,
count/int/port -> int, bool -> bool, addr/subnet/string/enum -> str,
set/vector -> list, unset (``-``) -> None, ``(empty)`` -> "" or [].

``read_dataframe`` converts whole columns at once (pandas C parser with
quoting and comments off, then vectorized conversions), typed from the header:

    time -> datetime64[ns, UTC] (rounded to the microsecond)
    interval -> timedelta64[ns]   count -> UInt64   int -> Int64
    port -> UInt16   double -> Float64   bool -> boolean
    addr/subnet/string/enum -> string (pandas StringDtype, <NA> for unset)
    set[...]/vector[...] -> object column of Python lists (elements as in
        read_log), None for unset, [] for (empty)

Strings: Zeek's ``\\xHH`` and ``\\\\`` escapes are decoded to bytes, then the
bytes are decoded as UTF-8 with ``errors``: "backslashreplace" (default) shows
an undecodable byte as the text ``\\xff`` (safe to print, like Zeek's JSON);
"surrogateescape" keeps the exact bytes (``s.encode("utf-8",
"surrogateescape")`` recovers them, and the writer accepts such strings).
JSON strings are kept as Zeek wrote them (its JSON ``\\xHH`` text is not
decoded: it cannot be told apart from a literal backslash).

Limits: every reader takes ``limits`` (``ReadLimits`` from ``.limits``:
line length, decompressed size, gzip ratio); a log over one raises
LogLimitError, an InputError naming the file and the limit, before it is
held in memory whole.

Errors: a line with the wrong number of columns, a value that is not valid for
its column's type, or a bad header raises LogFormatError naming the file and
the 1-based line number. No row is ever dropped silently. Lines starting with
``#`` are header/footer lines (Zeek writes a data line's leading ``#`` as
``\\x23``); a ``#`` inside a line is data. Concatenated logs (several
headers in one file) are read segment by segment; in a DataFrame the columns
are the union, in header order.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputError
from .limits import DEFAULT_LIMITS, CorruptGzip, ReadLimits, read_bounded
from .schema import Schema, SchemaError, load_schema, parse_type

__all__ = [
    "LoadedLogs",
    "LogFormatError",
    "LogHeader",
    "LOG_NAMES",
    "dtype_for",
    "empty_frame",
    "load_logs",
    "read_dataframe",
    "read_log",
]

#: Logs ``load_logs`` looks for in each session directory.
LOG_NAMES = ("conn", "dns", "weird", "capture_stats", "notice")


class LogFormatError(InputError):
    """A malformed Zeek log: the message names the file and the line."""

    def __init__(self, filename, lineno: int | None, message: str):
        self.filename = os.fspath(filename)
        self.lineno = lineno
        self.reason = message
        where = self.filename if lineno is None else "%s, line %d" % (self.filename, lineno)
        super().__init__(f"{where}: {message}")


@dataclass
class LogHeader:
    """What a log says about itself (TSV header lines; JSON: from the schema)."""

    path: str | None
    fields: tuple[str, ...]
    types: tuple[str, ...]
    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"
    open: str | None = None
    close: str | None = None
    format: str = "tsv"
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def schema(self) -> Schema:
        return Schema.from_header(self.path or "unknown", self.fields, self.types)


# --------------------------------------------------------------------------
# file access


def _read_bytes(path, limits: ReadLimits | None = None) -> bytes:
    try:
        return read_bounded(path, limits or DEFAULT_LIMITS)
    except CorruptGzip as e:
        raise LogFormatError(os.fspath(path), None, f"bad gzip data ({e})") from None


def _path_from_filename(path) -> str:
    base = os.path.basename(os.fspath(path))
    return base.split(".", 1)[0]


# --------------------------------------------------------------------------
# value decoding (shared by the record and the DataFrame readers)

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


def _bad(name, ztype, text):
    return ValueError(f"column {name} ({ztype}): bad value {text!r}")


def _atom_parser(ztype: str, name: str, errors: str, empty_field: str):
    """text -> Python value for one atomic (non-unset) value."""
    if ztype in ("time", "interval", "double"):

        def p(t):
            try:
                return float(t)
            except ValueError:
                raise _bad(name, ztype, t) from None

        return p
    if ztype in ("count", "int", "port"):
        lo, hi = {"count": (0, 2**64 - 1), "int": (-(2**63), 2**63 - 1), "port": (0, 65535)}[ztype]

        def p(t):
            try:
                v = int(t)
            except ValueError:
                raise _bad(name, ztype, t) from None
            if not lo <= v <= hi:
                raise _bad(name, ztype, t)
            return v

        return p
    if ztype == "bool":

        def p(t):
            if t == "T":
                return True
            if t == "F":
                return False
            raise _bad(name, ztype, t)

        return p
    # addr, subnet, string, enum, pattern, ...
    return lambda t: "" if t == empty_field else unescape(t, errors)


def _field_parser(ztype: str, name: str, hdr: LogHeader, errors: str):
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


# --------------------------------------------------------------------------
# TSV structure: header blocks and bodies


@dataclass
class _Segment:
    header: LogHeader
    body_start: int  # byte offset of the first data line
    body_end: int  # byte offset after the last data line
    first_lineno: int
    rows: int = 0  # data lines in the body


_HEADER_KEYS = ("set_separator", "empty_field", "unset_field", "path", "open", "close", "fields", "types")


def _decode_header_value(v: str) -> str:
    return _UNESC_B.sub(_unesc_repl, v.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")


def _parse_meta_line(line: str, sep: str) -> tuple[str, str]:
    body = line[1:]
    if body.startswith("separator "):
        return "separator", body[len("separator "):]
    key, s, value = body.partition(sep)
    if not s:  # e.g. btest's canonified "#open XXXX-XX-XX-XX-XX-XX"
        key, _, value = body.partition(" ")
    return key, value


def _segments(data: bytes, filename, schema: Schema | None) -> list[_Segment]:
    """Split a TSV log into header blocks and the data bodies they describe."""
    segs: list[_Segment] = []
    n = len(data)
    pos = 0
    lineno = 1
    hdr: LogHeader | None = None
    sep = "\t"
    meta: dict[str, str] = {}
    seg_open = False  # inside a header block that has not started a body yet

    def finish_header(at_lineno):
        nonlocal hdr
        if "fields" not in meta:
            if schema is None:
                raise LogFormatError(filename, at_lineno, "data line before any #fields header")
            names, types = list(schema.names), list(schema.types)
        else:
            names = meta["fields"].split(sep)
            if "types" not in meta:
                if schema is None or list(schema.names) != names:
                    raise LogFormatError(filename, at_lineno, "header has #fields but no #types")
                types = list(schema.types)
            else:
                types = meta["types"].split(sep)
        if len(names) != len(types):
            raise LogFormatError(filename, at_lineno, "#fields has %d names but #types has %d" % (len(names), len(types)))
        for t in types:
            try:
                parse_type(t)
            except SchemaError as e:
                raise LogFormatError(filename, at_lineno, f"bad #types header: {e}") from None
        if len(set(names)) != len(names):
            raise LogFormatError(filename, at_lineno, "#fields repeats a name")
        hdr = LogHeader(
            path=meta.get("path", schema.path if schema else None),
            fields=tuple(names),
            types=tuple(types),
            separator=sep,
            set_separator=_decode_header_value(meta.get("set_separator", ",")),
            empty_field=_decode_header_value(meta.get("empty_field", "(empty)")),
            unset_field=_decode_header_value(meta.get("unset_field", "-")),
            open=meta.get("open"),
            close=meta.get("close"),
            format="tsv",
            meta=dict(meta),
        )
        if len(hdr.set_separator) != 1:
            raise LogFormatError(filename, at_lineno, "set separator must be one character")

    while pos < n:
        if data[pos:pos + 1] == b"#":
            nl = data.find(b"\n", pos)
            end = n if nl < 0 else nl
            line = data[pos:end].decode("utf-8", "surrogateescape")
            if seg_open is False and hdr is not None and not line.startswith("#close"):
                # a new header block after data: concatenated logs
                meta = {}
                hdr = None
            key, value = _parse_meta_line(line, sep)
            if key == "separator":
                sep = _decode_header_value(value.strip())
                if not sep:
                    raise LogFormatError(filename, lineno, "empty #separator")
            elif key == "close":
                if hdr is not None:
                    hdr.close = value
                else:
                    meta["close"] = value
            else:
                meta[key] = value
            seg_open = key != "close" and hdr is None
            pos = end + 1
            lineno += 1
            continue
        # data: runs until the next line starting with '#'
        if hdr is None:
            finish_header(lineno)
        nxt = data.find(b"\n#", pos)
        body_end = n if nxt < 0 else nxt + 1
        rows = data.count(b"\n", pos, body_end)
        if body_end == n and not data.endswith(b"\n"):
            rows += 1
        segs.append(_Segment(hdr, pos, body_end, lineno, rows))
        lineno += rows
        pos = body_end
        seg_open = False
    if hdr is None and (meta or not segs):
        # header only (no rows) or an empty file
        if meta or schema is not None:
            finish_header(lineno)
            segs.append(_Segment(hdr, n, n, lineno))
        else:
            raise LogFormatError(filename, None, "empty file: no Zeek header")
    return segs


def _check_columns(data: bytes, seg: _Segment, filename) -> int:
    """Cheap column-count check of a body (two C-speed byte counts); returns
    the number of rows. On a mismatch a line-by-line scan raises
    LogFormatError with the exact line. Equal totals can still hide a short
    line balanced by a long one: pandas' parser rejects the long one, and
    _segment_frame then runs the same scan."""
    s, e = seg.body_start, seg.body_end
    if s >= e:
        return 0
    rows = seg.rows
    ncols = len(seg.header.fields)
    sep = seg.header.separator.encode("utf-8", "surrogateescape")
    if data.count(sep, s, e) != rows * (ncols - 1):
        return _find_bad_line(data, seg, filename)
    if ncols == 1 and (data[s:s + 1] == b"\n" or data.find(b"\n\n", s, e) >= 0):
        return _find_bad_line(data, seg, filename)
    return rows


def _find_bad_line(data: bytes, seg: _Segment, filename) -> int:
    ncols = len(seg.header.fields)
    sep = seg.header.separator.encode("utf-8", "surrogateescape")
    body = data[seg.body_start:seg.body_end]
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for i, line in enumerate(lines):
        if not line:
            raise LogFormatError(filename, seg.first_lineno + i, "empty line")
        got = line.count(sep) + 1
        if got != ncols:
            raise LogFormatError(
                filename, seg.first_lineno + i,
                "%d columns, expected %d (%s)" % (got, ncols, ", ".join(seg.header.fields[:3]) + ", ..."),
            )
    return len(lines)


# --------------------------------------------------------------------------
# read_log: records


def read_log(path, schema: Schema | None = None, errors: str = "backslashreplace", limits: ReadLimits | None = None):
    """Return ``(LogHeader, iterator of dict)`` for a TSV or JSON log, plain or
    gzip. The file is parsed completely before returning (so format errors
    raise here, not mid-iteration); the records are produced lazily."""
    data = _read_bytes(path, limits)
    if _is_json(data):
        return _read_json_records(data, path, schema)
    segs = _segments(data, path, schema)
    records: list = []
    for seg in segs:
        _check_columns(data, seg, path)
        records.append(_tsv_records(data, seg, path, errors))
    # parse eagerly to report errors now
    rows = [r for gen in records for r in gen]
    return segs[0].header, iter(rows)


def _tsv_records(data: bytes, seg: _Segment, filename, errors: str) -> Iterator[dict]:
    hdr = seg.header
    parsers = [_field_parser(t, n, hdr, errors) for n, t in zip(hdr.fields, hdr.types)]
    names = hdr.fields
    ncols = len(names)
    body = data[seg.body_start:seg.body_end].decode("utf-8", "surrogateescape")
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines):
        vals = line.split(hdr.separator)
        if len(vals) != ncols:
            raise LogFormatError(filename, seg.first_lineno + i, "%d columns, expected %d" % (len(vals), ncols))
        rec = {}
        for name, p, v in zip(names, parsers, vals):
            try:
                rec[name] = p(v)
            except ValueError as e:
                raise LogFormatError(filename, seg.first_lineno + i, str(e)) from None
        yield rec


# --------------------------------------------------------------------------
# JSON lines


def _is_json(data: bytes) -> bool:
    return data.lstrip()[:1] == b"{"


def _json_schema(path, schema: Schema | None) -> Schema | None:
    if schema is not None:
        return schema
    try:
        return load_schema(_path_from_filename(path))
    except SchemaError:
        return None


def _json_value(v, ztype: str | None, name: str):
    """Check/convert a JSON value against the Zeek type; returns Python value."""
    if v is None or ztype is None:
        return v
    container, element = parse_type(ztype)
    if container is not None:
        if not isinstance(v, list):
            raise _bad(name, ztype, v)
        return [None if e is None else _json_atom(e, element, name) for e in v]
    return _json_atom(v, element, name)


def _json_atom(v, t: str, name: str):
    if t in ("time", "interval", "double"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if t == "time" and isinstance(v, str):  # JSON::TS_ISO8601
                try:
                    return pd.Timestamp(v).timestamp()
                except ValueError:
                    pass
            raise _bad(name, t, v)
        return float(v)
    if t in ("count", "int", "port"):
        if isinstance(v, bool) or not isinstance(v, int):
            raise _bad(name, t, v)
        return v
    if t == "bool":
        if not isinstance(v, bool):
            raise _bad(name, t, v)
        return v
    if not isinstance(v, str):
        raise _bad(name, t, v)
    return v


def _json_rows(data: bytes, filename, schema: Schema | None):
    """Parse JSON lines -> (field names, types, list of dicts)."""
    types: dict[str, str | None] = {}
    order: list[str] = []
    if schema is not None:
        for f in schema.fields:
            types[f.name] = f.type
            order.append(f.name)
    known = set(order)
    rows = []
    for i, line in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise LogFormatError(filename, i, f"bad JSON ({e})") from None
        if not isinstance(obj, dict):
            raise LogFormatError(filename, i, "JSON line is not an object")
        rec = {}
        for k, v in obj.items():
            if k not in known:
                known.add(k)
                order.append(k)
                types[k] = None
            try:
                rec[k] = _json_value(v, types.get(k), k)
            except ValueError as e:
                raise LogFormatError(filename, i, str(e)) from None
        rows.append(rec)
    return order, types, rows


def _read_json_records(data: bytes, filename, schema: Schema | None):
    schema = _json_schema(filename, schema)
    order, types, rows = _json_rows(data, filename, schema)
    hdr = LogHeader(
        path=schema.path if schema else _path_from_filename(filename),
        fields=tuple(order),
        types=tuple(types[k] or "string" for k in order),
        format="json",
    )
    return hdr, iter({k: r.get(k) for k in order} for r in rows)


# --------------------------------------------------------------------------
# DataFrames


# Python-backed strings, whatever pandas' default storage is: with
# errors="surrogateescape" a value may hold lone surrogates, which Arrow
# strings refuse, and the dtype must not depend on whether pyarrow happens
# to be installed.
STRING_DTYPE = pd.StringDtype(storage="python")


def dtype_for(ztype: str):
    """pandas dtype used for a Zeek type."""
    container, element = parse_type(ztype)
    if container is not None:
        return np.dtype(object)
    return {
        "time": pd.DatetimeTZDtype("ns", "UTC"),
        "interval": np.dtype("timedelta64[ns]"),
        "count": pd.UInt64Dtype(),
        "int": pd.Int64Dtype(),
        "port": pd.UInt16Dtype(),
        "double": pd.Float64Dtype(),
        "bool": pd.BooleanDtype(),
    }.get(element, STRING_DTYPE)


def empty_frame(schema: Schema) -> pd.DataFrame:
    """A frame with no rows and the schema's columns and dtypes."""
    return pd.DataFrame({f.name: pd.Series([], dtype=dtype_for(f.type)) for f in schema.fields})


class _ColumnError(Exception):
    def __init__(self, row: int, message: str):
        self.row, self.message = row, message


def _first_bad(ok: np.ndarray) -> int:
    return int(np.flatnonzero(~ok)[0])


def _to_float(vals: np.ndarray, unset: np.ndarray, name: str, ztype: str) -> np.ndarray:
    filled = vals.copy()
    filled[unset] = "nan"
    try:
        return filled.astype(np.float64)
    except (ValueError, TypeError):
        for i, v in enumerate(filled):
            try:
                float(v)
            except (ValueError, TypeError):
                raise _ColumnError(i, str(_bad(name, ztype, v))) from None
        raise


def _to_int(vals, unset, name, ztype, np_type, lo, hi):
    filled = vals.copy()
    filled[unset] = "0"
    try:
        out = filled.astype(np.uint64 if ztype == "count" else np.int64)
    except (ValueError, TypeError, OverflowError):
        for i, v in enumerate(filled):
            try:
                x = int(v)
                if not lo <= x <= hi:
                    raise ValueError
            except (ValueError, TypeError):
                raise _ColumnError(i, str(_bad(name, ztype, v))) from None
        raise
    if ztype != "count":
        bad = (out < lo) | (out > hi)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _ColumnError(i, str(_bad(name, ztype, vals[i])))
    return out.astype(np_type)


def _unescape_array(vals: np.ndarray, todo: np.ndarray, errors: str) -> np.ndarray:
    idx = np.flatnonzero(todo)
    if len(idx):
        vals = vals.copy()
        for i in idx:
            vals[i] = unescape(vals[i], errors)
    return vals


def _contains(vals: np.ndarray, ch: str) -> np.ndarray:
    return pd.Series(vals, dtype=object).str.contains(ch, regex=False).to_numpy(dtype=bool, na_value=False)


def _convert_column(vals: np.ndarray, ztype: str, name: str, hdr: LogHeader, errors: str, has_backslash: bool):
    """object array of raw text -> typed pandas array."""
    unset = vals == hdr.unset_field
    container, element = parse_type(ztype)
    if container is not None:
        return _convert_container(vals, unset, element, name, hdr, errors)
    if element == "time":
        f = _to_float(vals, unset, name, ztype)
        us = np.round(f * 1e6)
        bad = ~unset & ~np.isfinite(us)
        if bad.any():
            i = _first_bad(~bad)
            raise _ColumnError(i, str(_bad(name, ztype, vals[i])))
        ns = np.where(unset, np.iinfo(np.int64).min, us.astype(np.int64, copy=False) * 1000)
        return pd.array(ns.view("M8[ns]")).tz_localize("UTC") if len(ns) else pd.array(ns.view("M8[ns]"), dtype=dtype_for("time"))
    if element == "interval":
        f = _to_float(vals, unset, name, ztype)
        bad = ~unset & ~np.isfinite(f)
        if bad.any():
            i = _first_bad(~bad)
            raise _ColumnError(i, str(_bad(name, ztype, vals[i])))
        ns = np.where(unset, np.iinfo(np.int64).min, np.round(np.where(unset, 0, f) * 1e9).astype(np.int64))
        return ns.view("m8[ns]")
    if element == "double":
        f = _to_float(vals, unset, name, ztype)
        return pd.arrays.FloatingArray(f, unset.copy())
    if element == "count":
        v = _to_int(vals, unset, name, ztype, np.uint64, 0, 2**64 - 1)
        return pd.arrays.IntegerArray(v, unset.copy())
    if element == "int":
        v = _to_int(vals, unset, name, ztype, np.int64, -(2**63), 2**63 - 1)
        return pd.arrays.IntegerArray(v, unset.copy())
    if element == "port":
        v = _to_int(vals, unset, name, ztype, np.int64, 0, 65535)
        return pd.arrays.IntegerArray(v.astype(np.uint16), unset.copy())
    if element == "bool":
        t = vals == "T"
        ok = t | (vals == "F") | unset
        if not ok.all():
            i = _first_bad(ok)
            raise _ColumnError(i, str(_bad(name, ztype, vals[i])))
        return pd.arrays.BooleanArray(t, unset.copy())
    # strings
    out = vals.copy() if (unset.any() or has_backslash) else vals
    empty = vals == hdr.empty_field
    if empty.any():
        out = out.copy() if out is vals else out
        out[empty] = ""
    if has_backslash:
        out = _unescape_array(out, _contains(out, "\\") & ~unset & ~empty, errors)
    if unset.any():
        out = out.copy() if out is vals else out
        out[unset] = None
    return pd.array(out, dtype=STRING_DTYPE)


def _convert_container(vals, unset, element, name, hdr, errors):
    """set/vector column -> object array of lists (None for unset).

    Each distinct text is converted once (logs repeat the same answers and
    TTLs a lot), then every row gets its own copy of the list (rows never
    share a mutable list; the immutable elements are shared). Conversion of
    the distinct texts: one ``str.split`` each and ``map(float|int)`` in C;
    texts with unset/empty elements, escapes or bad values go through the
    exact per-value parser that ``read_log`` uses (same results, precise
    errors)."""
    n = len(vals)
    out = np.empty(n, dtype=object)
    sset, u, e = hdr.set_separator, hdr.unset_field, hdr.empty_field
    idx = np.flatnonzero(~unset)
    if not len(idx):
        return out
    codes, uniq = pd.factorize(vals[idx])
    sel = [str(x) for x in uniq]
    joined = sset + sset.join(sel) + sset
    special = (sset + u + sset) in joined or e in joined or "\\" in joined
    if element in ("string", "enum", "addr", "subnet", "pattern", "file", "func"):
        lists = [x.split(sset) for x in sel] if not special else None
    else:
        conv = {"time": float, "interval": float, "double": float,
                "count": int, "int": int, "port": int, "bool": None}[element]
        lists = None
        if not special and conv is not None:
            try:
                lists = [list(map(conv, x.split(sset))) for x in sel]
            except ValueError:
                lists = None
            if lists is not None and conv is int:
                lo, hi = {"count": (0, 2**64 - 1), "int": (-(2**63), 2**63 - 1), "port": (0, 65535)}[element]
                flat = [v for lst in lists for v in lst]
                if flat and (min(flat) < lo or max(flat) > hi):
                    lists = None
    if lists is None:  # exact path
        parse = _field_parser(f"vector[{element}]", name, hdr, errors)
        lists = []
        for j, x in enumerate(sel):
            try:
                lists.append(parse(x))
            except ValueError as ex:
                row = int(np.flatnonzero(codes == j)[0])
                raise _ColumnError(int(idx[row]), str(ex)) from None
    rows = map(list.copy, map(lists.__getitem__, codes.tolist()))
    with _gc_paused():  # a million new lists would trigger many full GC passes
        out[idx] = np.fromiter(rows, dtype=object, count=len(idx))
    return out


@contextlib.contextmanager
def _gc_paused():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


_NUMERIC = frozenset({"time", "interval", "double", "count", "int", "port"})
_EXACT_FLOAT_LIMIT = 2.0**53


def _read_csv(body, hdr: LogHeader, numeric_fast: bool, usecols=None) -> pd.DataFrame:
    """The pandas C parser with quoting, comments and default NA off. With
    ``numeric_fast`` numeric columns are parsed to float64 in C (the unset
    marker becomes NaN; anything else unparsable raises ValueError)."""
    names = list(hdr.fields)
    sep = hdr.separator
    if numeric_fast:
        dtype = {n: (np.float64 if t in _NUMERIC else object) for n, t in zip(names, hdr.types)}
        na_values = {n: [hdr.unset_field] for n, t in zip(names, hdr.types) if t in _NUMERIC}
    else:
        dtype, na_values = object, None
    return pd.read_csv(
        io.BytesIO(body),
        sep=sep,
        header=None,
        names=names,
        usecols=usecols,
        dtype=dtype,
        quoting=csv.QUOTE_NONE,
        na_filter=bool(na_values),
        na_values=na_values,
        keep_default_na=False,
        skip_blank_lines=False,
        lineterminator="\n" if len(sep) == 1 else None,
        doublequote=False,
        escapechar=None,
        comment=None,
        engine="c" if len(sep) == 1 else "python",
        encoding="utf-8",
        encoding_errors="strict" if numeric_fast else "surrogateescape",
        index_col=False,
        low_memory=True,
    )


def _convert_float_column(f: np.ndarray, ztype: str, name: str, exact_text):
    """float64 column (NaN = unset) from the fast parse -> typed array.
    ``exact_text()`` returns the column's text when floats cannot be exact."""
    unset = np.isnan(f)
    if ztype == "double":
        return pd.arrays.FloatingArray(np.where(unset, 0.0, f), unset)
    finite = np.isfinite(f) | unset
    if not finite.all():
        raise _ColumnError(_first_bad(finite), f"column {name} ({ztype}): bad value {f[_first_bad(finite)]!r}")
    g = np.where(unset, 0.0, f)
    if ztype == "time":
        ns = np.where(unset, np.iinfo(np.int64).min, np.round(g * 1e6).astype(np.int64) * 1000)
        return pd.array(ns.view("M8[ns]")).tz_localize("UTC")
    if ztype == "interval":
        ns = np.where(unset, np.iinfo(np.int64).min, np.round(g * 1e9).astype(np.int64))
        return ns.view("m8[ns]")
    lo, hi = {"count": (0, 2**64 - 1), "int": (-(2**63), 2**63 - 1), "port": (0, 65535)}[ztype]
    ok = (g == np.floor(g)) & (g >= lo) & (g <= hi)
    if not ok.all():
        i = _first_bad(ok)
        raise _ColumnError(i, f"column {name} ({ztype}): bad value {f[i]!r}")
    if (np.abs(g) >= _EXACT_FLOAT_LIMIT).any():
        vals = exact_text()
        np_type = np.uint64 if ztype == "count" else np.int64
        v = _to_int(vals, vals == "-", name, ztype, np_type, lo, hi)
        return pd.arrays.IntegerArray(v, unset)
    np_type = {"count": np.uint64, "int": np.int64, "port": np.uint16}[ztype]
    return pd.arrays.IntegerArray(g.astype(np_type), unset)


def _segment_frame(data: bytes, seg: _Segment, filename, errors: str) -> pd.DataFrame:
    hdr = seg.header
    rows = _check_columns(data, seg, filename)
    names = list(hdr.fields)
    if rows == 0:
        return empty_frame(hdr.schema)
    body = memoryview(data)[seg.body_start:seg.body_end]
    fast = True
    try:
        raw = _read_csv(body, hdr, numeric_fast=True)
    except (ValueError, UnicodeDecodeError):
        fast = False  # a bad number or raw non-UTF-8: the exact path names it
    if not fast:
        try:
            raw = _read_csv(body, hdr, numeric_fast=False)
        except (pd.errors.ParserError, ValueError):
            _find_bad_line(data, seg, filename)
            raise
    if len(raw) != rows:
        _find_bad_line(data, seg, filename)
        raise LogFormatError(filename, seg.first_lineno, "parsed %d rows, expected %d" % (len(raw), rows))
    has_backslash = data.find(b"\\", seg.body_start, seg.body_end) >= 0
    cols = {}
    for name, ztype in zip(names, hdr.types):
        try:
            if fast and ztype in _NUMERIC:
                f = raw[name].to_numpy(dtype=np.float64)
                cols[name] = _convert_float_column(
                    f, ztype, name,
                    lambda n=name: _read_csv(body, hdr, False, usecols=[n])[n].to_numpy(dtype=object),
                )
            else:
                vals = raw[name].to_numpy(dtype=object)
                cols[name] = _convert_column(vals, ztype, name, hdr, errors, has_backslash)
        except _ColumnError as e:
            raise LogFormatError(filename, seg.first_lineno + e.row, e.message) from None
        del raw[name]
    return pd.DataFrame(cols, copy=False)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None]
    if len(frames) == 1:
        return frames[0]
    cols: list[str] = []
    dtypes = {}
    for f in frames:
        for c in f.columns:
            if c not in dtypes:
                cols.append(c)
                dtypes[c] = f[c].dtype
    fixed = []
    for f in frames:
        missing = [c for c in cols if c not in f.columns]
        if missing:
            f = f.copy()
            for c in missing:
                f[c] = pd.Series([None] * len(f), dtype=dtypes[c], index=f.index)
        fixed.append(f[cols])
    return pd.concat(fixed, ignore_index=True)


def read_dataframe(
    path, schema: Schema | None = None, errors: str = "backslashreplace", limits: ReadLimits | None = None
) -> pd.DataFrame:
    """Read one log (TSV or JSON, plain or gzip) into a typed DataFrame.
    ``frame.attrs["zeek_header"]`` holds the LogHeader."""
    data = _read_bytes(path, limits)
    if _is_json(data):
        hdr, records = _read_json_records(data, path, schema)
        df = _records_frame(hdr, list(records))
    else:
        segs = _segments(data, path, schema)
        hdr = segs[0].header
        with _gc_paused():  # millions of new objects, no cycles among them
            df = _concat([_segment_frame(data, s, path, errors) for s in segs])
    df.attrs["zeek_header"] = hdr
    return df


def _records_frame(hdr: LogHeader, records: list[dict]) -> pd.DataFrame:
    """Python-value records (as read_log yields) -> typed frame."""
    cols = {}
    n = len(records)
    for name, ztype in zip(hdr.fields, hdr.types):
        vals = [r.get(name) for r in records]
        cols[name] = _python_column(vals, ztype, n)
    return pd.DataFrame(cols) if cols else pd.DataFrame(index=range(n))


def _python_column(vals: list, ztype: str, n: int):
    container, element = parse_type(ztype)
    if container is not None:
        out = np.empty(n, dtype=object)
        out[:] = vals
        return out
    mask = np.fromiter((v is None for v in vals), dtype=bool, count=n)
    if element in ("time", "interval"):
        f = np.array([math.nan if v is None else v for v in vals], dtype=np.float64)
        if element == "time":
            ns = np.where(mask, np.iinfo(np.int64).min, np.round(np.where(mask, 0, f) * 1e6).astype(np.int64) * 1000)
            return pd.array(ns.view("M8[ns]")).tz_localize("UTC") if n else pd.array([], dtype=dtype_for("time"))
        ns = np.where(mask, np.iinfo(np.int64).min, np.round(np.where(mask, 0, f) * 1e9).astype(np.int64))
        return ns.view("m8[ns]")
    return pd.array(vals, dtype=dtype_for(ztype))


# --------------------------------------------------------------------------
# sessions


@dataclass
class LoadedLogs:
    """The logs of one or more sessions. Each is a DataFrame (empty with the
    schema's columns when a session lacks that log); with several sessions a
    ``session`` column names the directory each row came from."""

    conn: pd.DataFrame
    dns: pd.DataFrame
    weird: pd.DataFrame
    capture_stats: pd.DataFrame
    notice: pd.DataFrame       # blocking mode's refusals (with their process columns)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


_SUFFIXES = (".log", ".log.gz", ".json", ".json.gz")


_SECOND_ROTATION = re.compile(r"^(.*\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)-(\d+)$")


def _rotation_order(file_name: str) -> tuple[str, int]:
    """conn.<stamp>.log before conn.<stamp>-2.log (two rotations in one second)."""
    stem = file_name.split(".")[1]
    m = _SECOND_ROTATION.match(stem)
    return (m.group(1), int(m.group(2))) if m else (stem, 1)


def _find_log(directory: str, name: str) -> list[str]:
    """The files of one log: the rotated ones (conn.2024-01-01-10-00-00.log,
    dns.16:00:00-17:00:00.log.gz), oldest first, then the current one."""
    try:
        entries = sorted(os.listdir(directory))
    except OSError as e:
        raise InputError(f"cannot read session directory {directory}: {e}") from None
    rotated = sorted(
        (e for e in entries
         if e.startswith(name + ".") and e.endswith(_SUFFIXES) and e.count(".") >= 2 and e[len(name):] not in _SUFFIXES),
        key=_rotation_order)
    rotated = [os.path.join(directory, e) for e in rotated]
    current = [os.path.join(directory, name + suf) for suf in _SUFFIXES
               if os.path.isfile(os.path.join(directory, name + suf))]
    return rotated + current[:1]


def _session_labels(dirs: list[str]) -> list[str]:
    base = [os.path.basename(os.path.normpath(d)) or d for d in dirs]
    return base if len(set(base)) == len(base) else [os.path.normpath(d) for d in dirs]


def has_logs(directory) -> bool:
    """Whether a directory holds a conn or dns log (TSV or JSON, plain or gzipped): a session."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return False
    return any(e.startswith(("conn.", "dns.")) and (".log" in e or ".json" in e) for e in entries)


def load_logs(
    *session_dirs, errors: str = "backslashreplace", workers: int = 2, limits: ReadLimits | None = None
) -> LoadedLogs:
    """Load conn, dns, weird, capture_stats and notice logs from session directories.

    Each log is read with its own header; columns of our schema that a file
    lacks (older Zeek versions) are added as all-NA columns of the right
    dtype, extra columns are kept. With more than one directory a
    ``session`` column (categorical) names each row's directory. Files are
    parsed by ``workers`` threads (pandas' parser releases the GIL).
    """
    if not session_dirs:
        raise InputError("load_logs: give at least one session directory")
    dirs = [os.fspath(d) for d in session_dirs]
    for d in dirs:
        if not os.path.isdir(d):
            raise InputError(f"not a session directory: {d}")
    labels = _session_labels(dirs)
    jobs = []  # (log name, dir index, path, place among the log's files): biggest first keeps threads busy
    for name in LOG_NAMES:
        for k, d in enumerate(dirs):
            for i, p in enumerate(_find_log(d, name)):
                jobs.append((name, k, p, i))
    jobs.sort(key=lambda j: -os.path.getsize(j[2]))

    def run(job):
        name, _, p, _ = job
        return read_dataframe(p, schema=load_schema(name), errors=errors, limits=limits)

    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(run, jobs))
    else:
        results = [run(j) for j in jobs]
    by_key: dict[tuple[str, int], list[pd.DataFrame]] = {}
    for job, frame in sorted(zip(jobs, results), key=lambda jr: jr[0][3]):
        by_key.setdefault((job[0], job[1]), []).append(frame)
    out = {}
    for name in LOG_NAMES:
        schema = load_schema(name)
        frames = []
        for k, label in enumerate(labels):
            parts = by_key.get((name, k))
            f = _concat(parts) if parts else empty_frame(schema)
            for fld in schema.fields:
                if fld.name not in f.columns:
                    f[fld.name] = empty_frame(Schema(name, (fld,)))[fld.name].reindex(range(len(f)))
            if len(dirs) > 1:
                f.insert(0, "session", label)
            frames.append(f)
        df = _concat(frames)
        if len(dirs) > 1:
            df["session"] = pd.Categorical(df["session"], categories=labels)
        out[name] = df
    return LoadedLogs(**out)
