"""``read_dataframe``: one log (TSV or JSON, plain or gzip) as a typed DataFrame.

API::

    read_dataframe(path, schema=None, errors="backslashreplace", limits=None) -> DataFrame
    concat_frames(frames) -> DataFrame        # union of columns, in first-seen order

TSV bodies go through pandas' C parser with quoting, comments and default NA
off; numeric columns are parsed to float64 in C when they can be exact.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd

from .columns import ColumnError, convert_column, convert_float_column, empty_frame, gc_paused, python_column
from .header import LogFormatError, LogHeader
from .jsonlog import is_json, read_json_records
from .limits import ReadLimits
from .schema import Schema
from .segments import Segment, check_columns, find_bad_line, split_segments
from .source import read_bytes

_NUMERIC = frozenset({"time", "interval", "double", "count", "int", "port"})


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


def _segment_frame(data: bytes, seg: Segment, filename, errors: str) -> pd.DataFrame:
    hdr = seg.header
    rows = check_columns(data, seg, filename)
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
            find_bad_line(data, seg, filename)
            raise
    if len(raw) != rows:
        find_bad_line(data, seg, filename)
        raise LogFormatError(filename, seg.first_lineno, "parsed %d rows, expected %d" % (len(raw), rows))
    has_backslash = data.find(b"\\", seg.body_start, seg.body_end) >= 0
    cols = {}
    for name, ztype in zip(names, hdr.types):
        try:
            if fast and ztype in _NUMERIC:
                f = raw[name].to_numpy(dtype=np.float64)
                cols[name] = convert_float_column(
                    f, ztype, name,
                    lambda n=name: _read_csv(body, hdr, False, usecols=[n])[n].to_numpy(dtype=object),
                )
            else:
                vals = raw[name].to_numpy(dtype=object)
                cols[name] = convert_column(vals, ztype, name, hdr, errors, has_backslash)
        except ColumnError as e:
            raise LogFormatError(filename, seg.first_lineno + e.row, e.message) from None
        del raw[name]
    return pd.DataFrame(cols, copy=False)


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
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
    data = read_bytes(path, limits)
    if is_json(data):
        hdr, records = read_json_records(data, path, schema)
        df = _records_frame(hdr, list(records))
    else:
        segs = split_segments(data, path, schema)
        hdr = segs[0].header
        with gc_paused():  # millions of new objects, no cycles among them
            df = concat_frames([_segment_frame(data, s, path, errors) for s in segs])
    df.attrs["zeek_header"] = hdr
    return df


def _records_frame(hdr: LogHeader, records: list[dict]) -> pd.DataFrame:
    """Python-value records (as read_log yields) -> typed frame."""
    cols = {}
    n = len(records)
    for name, ztype in zip(hdr.fields, hdr.types):
        vals = [r.get(name) for r in records]
        cols[name] = python_column(vals, ztype, n)
    return pd.DataFrame(cols) if cols else pd.DataFrame(index=range(n))
