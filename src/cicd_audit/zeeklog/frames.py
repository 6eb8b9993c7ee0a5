"""``read_dataframe``: one log (TSV or JSON, plain or gzip) as a typed DataFrame.

API::

    read_dataframe(path, schema=None, errors="backslashreplace", limits=None,
                   chunk_bytes=CHUNK_BYTES) -> DataFrame
    iter_frames(path, ...same, columns=None) -> the same frame's pieces, one chunk at a time
    concat_frames(frames) -> DataFrame        # union of columns, in first-seen order

TSV bodies go through pandas' C parser with quoting, comments and default NA
off; numeric columns are parsed to float64 in C when they can be exact. The text
is read in line-aligned chunks (``source.line_chunks``), each converted to
typed columns at once, and the chunks' columns joined at the end.
"""

from __future__ import annotations

import csv
import io
import itertools

import numpy as np
import pandas as pd

from .allocator import arrow_on_system_heap, release_free_memory
from .columns import (
    ColumnError,
    convert_column,
    convert_float_column,
    empty_frame,
    gc_paused,
    python_column,
    unify_dtypes,
)
from .header import LogFormatError, LogHeader
from .jsonlog import JsonLines, is_json
from .limits import ReadLimits
from .schema import Schema
from .segments import Segment, SegmentScanner, check_columns, find_bad_line
from .source import CHUNK_BYTES, drain, line_chunks

_NUMERIC = frozenset({"time", "interval", "double", "count", "int", "port"})

#: Parsed chunks of at least this many rows give back each column's memory as it is converted.
FREE_AS_WE_GO_ROWS = 20_000


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


def _segment_columns(data: bytes, seg: Segment, filename, errors: str, columns=None) -> dict:
    """One body (or the part of it in this chunk) -> {column name: typed array}; with
    ``columns``, only those of them the header has (the others are neither converted nor checked)."""
    hdr = seg.header
    rows = check_columns(data, seg, filename)
    names = list(hdr.fields)
    usecols = None if columns is None else [n for n in names if n in columns]
    if rows == 0:
        empty = empty_frame(hdr.schema)
        return {name: empty[name] for name in empty.columns if usecols is None or name in usecols}
    body = memoryview(data)[seg.body_start:seg.body_end]
    fast = True
    try:
        raw = _read_csv(body, hdr, numeric_fast=True, usecols=usecols)
    except (ValueError, UnicodeDecodeError):
        fast = False  # a bad number or raw non-UTF-8: the exact path names it
    if not fast:
        try:
            raw = _read_csv(body, hdr, numeric_fast=False, usecols=usecols)
        except (pd.errors.ParserError, ValueError):
            find_bad_line(data, seg, filename)
            raise
    if len(raw) != rows:
        find_bad_line(data, seg, filename)
        raise LogFormatError(filename, seg.first_lineno, "parsed %d rows, expected %d" % (len(raw), rows))
    has_backslash = data.find(b"\\", seg.body_start, seg.body_end) >= 0
    # Each parsed column is dropped once converted, so a big chunk's text objects go as its typed
    # columns come; dropping one copies the rest, which for a small log costs half its read.
    free_as_we_go = rows >= FREE_AS_WE_GO_ROWS
    cols = {}
    for name, ztype in zip(names, hdr.types):
        if usecols is not None and name not in usecols:
            continue
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
        if free_as_we_go:
            del raw[name]
    return cols


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
    for c in cols:  # one file's column in python storage (see unify_dtypes): all follow
        pieces = [f[c].array for f in fixed]
        unified = unify_dtypes(pieces)
        if unified is not pieces:
            fixed = [f.assign(**{c: a}) for f, a in zip(fixed, unified)]
    return pd.concat(fixed, ignore_index=True)


def read_dataframe(
    path,
    schema: Schema | None = None,
    errors: str = "backslashreplace",
    limits: ReadLimits | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> pd.DataFrame:
    """Read one log (TSV or JSON, plain or gzip) into a typed DataFrame.
    ``frame.attrs["zeek_header"]`` holds the LogHeader.

    A TSV log is parsed ``chunk_bytes`` of text at a time, each chunk
    straight to typed columns, so the text and its Python objects are never
    held whole: memory is the frame's plus one chunk's. The frame does not
    depend on ``chunk_bytes``. Arrow's buffers come from malloc
    (``allocator.arrow_on_system_heap``), so freed ones are given back."""
    pieces = list(_pieces(path, schema, errors, limits, chunk_bytes))
    if isinstance(pieces[0][1], pd.DataFrame):  # JSON: a frame a chunk, the last header the log's
        hdr = pieces[-1][0]
        df = concat_frames([frame for _, frame in pieces])
    else:
        hdr = pieces[0][0]
        df = _join_pieces(pieces)
    df.attrs["zeek_header"] = hdr
    return df


def iter_frames(
    path,
    schema: Schema | None = None,
    errors: str = "backslashreplace",
    limits: ReadLimits | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    columns=None,
):
    """The frames of one log, piece by piece, in its order: what ``read_dataframe`` would join
    (each piece typed as the joined frame would be, a piece's columns those of its own
    header: a JSON log's, the fields seen up to its chunk). For readers that reduce each
    piece as it comes and never hold the log: the log's memory is then one chunk's.

    ``columns``: only these (those a piece's header has), for a reader that needs a few: a
    TSV log's other columns are then not even parsed, which saves the time and the
    short-lived objects of most of its text."""
    for hdr, piece in _pieces(path, schema, errors, limits, chunk_bytes, columns):
        if not isinstance(piece, pd.DataFrame):
            piece = pd.DataFrame(piece, copy=False)
        piece.attrs["zeek_header"] = hdr
        yield piece


def _pieces(path, schema, errors, limits, chunk_bytes, columns=None):
    """(header, {column: typed array}) per header block of each chunk, or one (header, frame) for JSON."""
    arrow_on_system_heap()
    chunks = line_chunks(path, limits, chunk_bytes)
    first = next(chunks, b"")
    while first and not first.strip():  # blank lines before the first: JSON or TSV is told by what follows
        more = next(chunks, b"")
        if not more:
            break
        first += more
    if is_json(first):
        # JSON lines become one dict per row before typing (read_log's values), chunk by chunk
        lines = JsonLines(path, schema)
        try:
            for chunk in itertools.chain([first], chunks):
                hdr, records = lines.parse(chunk)
                del chunk
                yield hdr, _records_frame(hdr, records, columns)
                del records
        except LogFormatError:
            drain(chunks)
            raise
        return
    scanner = SegmentScanner(path, schema)
    try:
        for chunk in itertools.chain([first], chunks):
            with gc_paused():  # millions of new objects, no cycles among them
                done = [(seg.header, _segment_columns(chunk, seg, path, errors, columns))
                        for seg in scanner.scan(chunk)]
            del chunk
            release_free_memory()  # the chunk's parse, freed: its pages back before the next
            yield from done
            del done
        for seg in scanner.finish():
            yield seg.header, _segment_columns(b"", seg, path, errors, columns)
    except LogFormatError:
        drain(chunks)
        raise


def _join_pieces(pieces: list[tuple[LogHeader, dict]]) -> pd.DataFrame:
    """Chunks' columns -> one frame: the pieces of one header block are
    joined column by column (each piece released as soon as its column is
    copied, so the peak is the frame plus one column); several header
    blocks (concatenated logs) are then joined by ``concat_frames``."""
    groups: list[tuple[LogHeader, list[dict]]] = []
    for hdr, cols in pieces:
        if groups and groups[-1][0] is hdr:
            groups[-1][1].append(cols)
        else:
            groups.append((hdr, [cols]))
    pieces.clear()
    frames = []
    for hdr, parts in groups:
        joined = {}
        for name in hdr.fields:
            column = unify_dtypes([part.pop(name) for part in parts])
            if len(column) == 1:
                joined[name] = column[0]
            else:
                joined[name] = pd.concat([pd.Series(a, copy=False) for a in column], ignore_index=True)
            del column
            release_free_memory()
        frames.append(pd.DataFrame(joined, copy=False))
    return concat_frames(frames)


def _records_frame(hdr: LogHeader, records: list[dict], columns=None) -> pd.DataFrame:
    """Python-value records (as read_log yields; a field a record lacks is unset) -> typed frame
    (of ``columns`` only, when given)."""
    cols = {}
    n = len(records)
    for name, ztype in zip(hdr.fields, hdr.types):
        if columns is not None and name not in columns:
            continue
        vals = [r.get(name) for r in records]
        cols[name] = python_column(vals, ztype, n)
    return pd.DataFrame(cols) if cols else pd.DataFrame(index=range(n))
