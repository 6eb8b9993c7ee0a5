"""Columns of raw text (or parsed floats) to typed pandas arrays, one Zeek type each.

API::

    STRING_DTYPE                              # StringDtype, Arrow storage when pyarrow is there
    PYTHON_STRING_DTYPE                       # StringDtype, python storage (text Arrow refuses)
    ARROW                                     # whether pyarrow is importable: the compact dtypes
    dtype_for(ztype) -> dtype                 # the dtype a Zeek type reads as
    container_dtype(element) -> dtype         # set/vector: Arrow list, or object without pyarrow
    unify_dtypes(arrays) -> arrays            # pieces of one column, cast to one dtype
    python_lists(column) -> object array      # a set/vector column as Python lists, None where unset
    empty_frame(schema) -> DataFrame          # no rows, the schema's dtypes
    convert_column(vals, ztype, name, header, errors, has_backslash) -> array
    convert_float_column(floats, ztype, name, exact_text) -> array
    python_column(values, ztype, n) -> array  # from read_log's Python values
    ColumnError(row, message)                 # the row within the column
    gc_paused()                               # context: no GC while building objects
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math

import numpy as np
import pandas as pd

from .header import LogHeader
from .schema import Schema, parse_type
from .values import bad_value, field_parser, unescape

try:  # optional (the fleet extra); without it the frame takes ~2x the memory
    import pyarrow as pa
except ImportError:  # pragma: no cover - the project's machines have it
    pa = None

#: Strings and vectors are held in Arrow buffers when pyarrow is installed: a
#: Python str per uid and a Python list per answers/TTLs cell were two thirds
#: of a dns.log frame (docs/benchmarks.md, chunked reading). Same dtype
#: ("string", NA for unset) either way; only the storage differs.
ARROW = pa is not None and hasattr(pd, "ArrowDtype")
PYTHON_STRING_DTYPE = pd.StringDtype(storage="python")
STRING_DTYPE = pd.StringDtype(storage="pyarrow") if ARROW else PYTHON_STRING_DTYPE

_STRING_ELEMENTS = ("string", "enum", "addr", "subnet", "pattern", "file", "func")


def _arrow_element(element: str):
    """Arrow type of a vector's elements: read_log's values (float seconds for
    time/interval, as the fleet store keeps them: fleet/columns.py)."""
    return {"time": pa.float64(), "interval": pa.float64(), "double": pa.float64(), "int": pa.int64(),
            "count": pa.uint64(), "port": pa.uint64(), "bool": pa.bool_()}.get(element, pa.string())


def container_dtype(element: str):
    """dtype of a set/vector column: an Arrow list of the elements, or (no
    pyarrow) an object column of Python lists."""
    if not ARROW:
        return np.dtype(object)
    return pd.ArrowDtype(pa.list_(_arrow_element(element)))


def dtype_for(ztype: str):
    """pandas dtype used for a Zeek type."""
    container, element = parse_type(ztype)
    if container is not None:
        return container_dtype(element)
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
    """A frame with no rows and the schema's columns and dtypes (a copy: the caller may add to it)."""
    return _empty_frame(schema).copy()


@functools.cache
def _empty_frame(schema: Schema) -> pd.DataFrame:
    # Built once per schema: a session lacks most logs, and a frame of ~30 typed columns costs ms.
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
    return string_array(out)


def string_array(values):
    """str/None values -> a StringDtype array: Arrow storage unless a value
    holds lone surrogates (undecodable bytes kept with errors="surrogateescape"),
    which Arrow's UTF-8 refuses; then python storage, for that column only."""
    if STRING_DTYPE is not PYTHON_STRING_DTYPE:
        try:
            return pd.array(values, dtype=STRING_DTYPE)
        except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return pd.array(values, dtype=PYTHON_STRING_DTYPE)


def _arrow_lists(lists: list, codes: np.ndarray, idx: np.ndarray, n: int, element: str):
    """One Arrow list per row, taken from the distinct texts' lists (null where
    unset): offsets into shared buffers instead of a Python list per row.
    None when Arrow refuses an element (lone surrogates): then Python lists."""
    dtype = container_dtype(element)
    try:
        distinct = pa.array(lists, type=dtype.pyarrow_dtype)
    except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None
    take = np.full(n, -1, dtype=np.int64)
    take[idx] = codes
    rows = distinct.take(pa.array(take, mask=take < 0))
    return dtype.construct_array_type()(rows)


def python_lists(array) -> np.ndarray:
    """An Arrow list column -> object array of Python lists, None where unset
    (the form without pyarrow; also what a caller needing lists gets)."""
    array = getattr(array, "array", array)  # a Series: its array
    if not (ARROW and isinstance(array.dtype, pd.ArrowDtype)):
        return np.asarray(array, dtype=object)
    values = pa.array(array).to_pylist()
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def unify_dtypes(arrays: list) -> list:
    """Pieces of one column (chunks, files) with one dtype, so concatenating
    keeps it: where one piece fell back to python storage (see string_array,
    _arrow_lists) the others follow."""
    if len({a.dtype for a in arrays}) < 2:
        return arrays
    if any(isinstance(a.dtype, np.dtype) and a.dtype == object for a in arrays):
        return [a if isinstance(a.dtype, np.dtype) else python_lists(a) for a in arrays]
    if any(a.dtype == PYTHON_STRING_DTYPE for a in arrays):
        return [pd.array(np.asarray(a, dtype=object), dtype=PYTHON_STRING_DTYPE)
                if isinstance(a.dtype, pd.StringDtype) else a for a in arrays]
    return arrays


def _convert_container(vals, unset, element, name, hdr, errors):
    """set/vector column -> Arrow list array (null for unset), or without
    pyarrow an object array of lists (None for unset).

    Each distinct text is converted once (logs repeat the same answers and
    TTLs a lot), then each row takes its distinct text's list (Arrow: a copy
    into one buffer; Python lists: every row its own copy, so rows never
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
        return _arrow_lists([], idx, idx, n, element) if ARROW else out
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
    if ARROW:
        arrow = _arrow_lists(lists, codes, idx, n, element)
        if arrow is not None:
            return arrow
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
        if ARROW:
            dtype = container_dtype(element)
            try:
                return dtype.construct_array_type()(pa.array(vals, type=dtype.pyarrow_dtype))
            except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                pass  # Python lists, as string_array falls back
        out = np.empty(n, dtype=object)
        out[:] = vals
        return out
    if dtype_for(ztype) == STRING_DTYPE:
        return string_array(vals)
    mask = np.fromiter((v is None for v in vals), dtype=bool, count=n)
    if element in ("time", "interval"):
        f = np.array([math.nan if v is None else v for v in vals], dtype=np.float64)
        if element == "time":
            ns = np.where(mask, np.iinfo(np.int64).min, np.round(np.where(mask, 0, f) * 1e6).astype(np.int64) * 1000)
            return pd.array(ns.view("M8[ns]")).tz_localize("UTC") if n else pd.array([], dtype=dtype_for("time"))
        ns = np.where(mask, np.iinfo(np.int64).min, np.round(np.where(mask, 0, f) * 1e9).astype(np.int64))
        return ns.view("m8[ns]")
    return pd.array(vals, dtype=dtype_for(ztype))
