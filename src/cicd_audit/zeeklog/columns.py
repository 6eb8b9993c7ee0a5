"""Columns of raw text (or parsed floats) to typed pandas arrays, one Zeek type each.

API::

    STRING_DTYPE                              # pandas' python-backed StringDtype
    dtype_for(ztype) -> dtype                 # the dtype a Zeek type reads as
    empty_frame(schema) -> DataFrame          # no rows, the schema's dtypes
    convert_column(vals, ztype, name, header, errors, has_backslash) -> array
    convert_float_column(floats, ztype, name, exact_text) -> array
    python_column(values, ztype, n) -> array  # from read_log's Python values
    ColumnError(row, message)                 # the row within the column
    gc_paused()                               # context: no GC while building objects
"""

from __future__ import annotations

import contextlib
import gc
import math

import numpy as np
import pandas as pd

from .header import LogHeader
from .schema import Schema, parse_type
from .values import bad_value, field_parser, unescape

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


class ColumnError(Exception):
    def __init__(self, row: int, message: str):
        self.row, self.message = row, message


def first_bad(ok: np.ndarray) -> int:
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
                raise ColumnError(i, str(bad_value(name, ztype, v))) from None
        raise


def to_int(vals, unset, name, ztype, np_type, lo, hi):
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
                raise ColumnError(i, str(bad_value(name, ztype, v))) from None
        raise
    if ztype != "count":
        bad = (out < lo) | (out > hi)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ColumnError(i, str(bad_value(name, ztype, vals[i])))
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


def convert_column(vals: np.ndarray, ztype: str, name: str, hdr: LogHeader, errors: str, has_backslash: bool):
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
            i = first_bad(~bad)
            raise ColumnError(i, str(bad_value(name, ztype, vals[i])))
        ns = np.where(unset, np.iinfo(np.int64).min, us.astype(np.int64, copy=False) * 1000)
        return pd.array(ns.view("M8[ns]")).tz_localize("UTC") if len(ns) else pd.array(ns.view("M8[ns]"), dtype=dtype_for("time"))
    if element == "interval":
        f = _to_float(vals, unset, name, ztype)
        bad = ~unset & ~np.isfinite(f)
        if bad.any():
            i = first_bad(~bad)
            raise ColumnError(i, str(bad_value(name, ztype, vals[i])))
        ns = np.where(unset, np.iinfo(np.int64).min, np.round(np.where(unset, 0, f) * 1e9).astype(np.int64))
        return ns.view("m8[ns]")
    if element == "double":
        f = _to_float(vals, unset, name, ztype)
        return pd.arrays.FloatingArray(f, unset.copy())
    if element == "count":
        v = to_int(vals, unset, name, ztype, np.uint64, 0, 2**64 - 1)
        return pd.arrays.IntegerArray(v, unset.copy())
    if element == "int":
        v = to_int(vals, unset, name, ztype, np.int64, -(2**63), 2**63 - 1)
        return pd.arrays.IntegerArray(v, unset.copy())
    if element == "port":
        v = to_int(vals, unset, name, ztype, np.int64, 0, 65535)
        return pd.arrays.IntegerArray(v.astype(np.uint16), unset.copy())
    if element == "bool":
        t = vals == "T"
        ok = t | (vals == "F") | unset
        if not ok.all():
            i = first_bad(ok)
            raise ColumnError(i, str(bad_value(name, ztype, vals[i])))
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
        # one object per distinct element: the same address recurs in many
        # answer sets; a str per occurrence was the largest column cost in a
        # dns.log frame (bench/reader_memory.py)
        pool: dict = {}
        lists = [[pool.setdefault(v, v) for v in x.split(sset)] for x in sel] if not special else None
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
        parse = field_parser(f"vector[{element}]", name, hdr, errors)
        lists = []
        for j, x in enumerate(sel):
            try:
                lists.append(parse(x))
            except ValueError as ex:
                row = int(np.flatnonzero(codes == j)[0])
                raise ColumnError(int(idx[row]), str(ex)) from None
    rows = map(list.copy, map(lists.__getitem__, codes.tolist()))
    with gc_paused():  # a million new lists would trigger many full GC passes
        out[idx] = np.fromiter(rows, dtype=object, count=len(idx))
    return out


@contextlib.contextmanager
def gc_paused():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


_EXACT_FLOAT_LIMIT = 2.0**53


def convert_float_column(f: np.ndarray, ztype: str, name: str, exact_text):
    """float64 column (NaN = unset) from the fast parse -> typed array.
    ``exact_text()`` returns the column's text when floats cannot be exact."""
    unset = np.isnan(f)
    if ztype == "double":
        return pd.arrays.FloatingArray(np.where(unset, 0.0, f), unset)
    finite = np.isfinite(f) | unset
    if not finite.all():
        raise ColumnError(first_bad(finite), f"column {name} ({ztype}): bad value {f[first_bad(finite)]!r}")
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
        i = first_bad(ok)
        raise ColumnError(i, f"column {name} ({ztype}): bad value {f[i]!r}")
    if (np.abs(g) >= _EXACT_FLOAT_LIMIT).any():
        vals = exact_text()
        np_type = np.uint64 if ztype == "count" else np.int64
        v = to_int(vals, vals == "-", name, ztype, np_type, lo, hi)
        return pd.arrays.IntegerArray(v, unset)
    np_type = {"count": np.uint64, "int": np.int64, "port": np.uint16}[ztype]
    return pd.arrays.IntegerArray(g.astype(np_type), unset)


def python_column(vals: list, ztype: str, n: int):
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
