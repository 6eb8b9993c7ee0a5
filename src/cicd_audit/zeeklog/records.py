"""``read_log``: a log as Python records (one dict per row).

API::

    read_log(path, schema=None, errors="backslashreplace", limits=None)
        -> (LogHeader, iterator of dict)
"""

from __future__ import annotations

from collections.abc import Iterator

from .header import LogFormatError
from .jsonlog import is_json, read_json_records
from .limits import ReadLimits
from .schema import Schema
from .segments import Segment, check_columns, split_segments
from .source import read_bytes
from .values import field_parser


def read_log(path, schema: Schema | None = None, errors: str = "backslashreplace", limits: ReadLimits | None = None):
    """Return ``(LogHeader, iterator of dict)`` for a TSV or JSON log, plain or
    gzip. The file is parsed completely before returning (so format errors
    raise here, not mid-iteration); the records are produced lazily."""
    data = read_bytes(path, limits)
    if is_json(data):
        return read_json_records(data, path, schema)
    segs = split_segments(data, path, schema)
    records: list = []
    for seg in segs:
        check_columns(data, seg, path)
        records.append(_tsv_records(data, seg, path, errors))
    # parse eagerly to report errors now
    rows = [r for gen in records for r in gen]
    return segs[0].header, iter(rows)


def _tsv_records(data: bytes, seg: Segment, filename, errors: str) -> Iterator[dict]:
    hdr = seg.header
    parsers = [field_parser(t, n, hdr, errors) for n, t in zip(hdr.fields, hdr.types)]
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
