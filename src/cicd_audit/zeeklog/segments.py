"""The structure of a TSV log: header blocks and the data bodies they describe.

API::

    split_segments(data, filename, schema) -> list[Segment]
    Segment(header, body_start, body_end, first_lineno, rows)
    check_columns(data, segment, filename) -> rows    # LogFormatError on a bad line
    find_bad_line(data, segment, filename)            # the exact line, as LogFormatError

Concatenated logs (several header blocks in one file) give one segment per
body; a ``#close`` line after the data sets the header's ``close``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .header import LogFormatError, LogHeader
from .schema import Schema, SchemaError, parse_type
from .values import unescape_header


@dataclass
class Segment:
    header: LogHeader
    body_start: int  # byte offset of the first data line
    body_end: int  # byte offset after the last data line
    first_lineno: int
    rows: int = 0  # data lines in the body


def _parse_meta_line(line: str, sep: str) -> tuple[str, str]:
    body = line[1:]
    if body.startswith("separator "):
        return "separator", body[len("separator "):]
    key, s, value = body.partition(sep)
    if not s:  # e.g. btest's canonified "#open XXXX-XX-XX-XX-XX-XX"
        key, _, value = body.partition(" ")
    return key, value


def split_segments(data: bytes, filename, schema: Schema | None) -> list[Segment]:
    """Split a TSV log into header blocks and the data bodies they describe."""
    segs: list[Segment] = []
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
            set_separator=unescape_header(meta.get("set_separator", ",")),
            empty_field=unescape_header(meta.get("empty_field", "(empty)")),
            unset_field=unescape_header(meta.get("unset_field", "-")),
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
                sep = unescape_header(value.strip())
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
        segs.append(Segment(hdr, pos, body_end, lineno, rows))
        lineno += rows
        pos = body_end
        seg_open = False
    if hdr is None and (meta or not segs):
        # header only (no rows) or an empty file
        if meta or schema is not None:
            finish_header(lineno)
            segs.append(Segment(hdr, n, n, lineno))
        else:
            raise LogFormatError(filename, None, "empty file: no Zeek header")
    return segs


def check_columns(data: bytes, seg: Segment, filename) -> int:
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
        return find_bad_line(data, seg, filename)
    if ncols == 1 and (data[s:s + 1] == b"\n" or data.find(b"\n\n", s, e) >= 0):
        return find_bad_line(data, seg, filename)
    return rows


def find_bad_line(data: bytes, seg: Segment, filename) -> int:
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
