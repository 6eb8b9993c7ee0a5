"""The structure of a TSV log: header blocks and the data bodies they describe.

API::

    split_segments(data, filename, schema) -> list[Segment]
    SegmentScanner(filename, schema)   # .scan(chunk) -> segments, .finish(): the same, chunk by chunk
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


class SegmentScanner:
    """Splits a TSV log into segments chunk by chunk: each chunk must start
    at a line start (only the last may end without a newline). The state
    between chunks (current header, separator, line number) is kept here, so
    a body split across chunks gives one segment per chunk, all with the same
    LogHeader object (whose ``close`` a later ``#close`` line sets)."""

    def __init__(self, filename, schema: Schema | None):
        self.filename, self.schema = filename, schema
        self.lineno = 1
        self.hdr: LogHeader | None = None
        self.sep = "\t"
        self.meta: dict[str, str] = {}
        self.seg_open = False  # inside a header block that has not started a body yet
        self.bodies = 0

    def _finish_header(self, at_lineno):
        filename, schema, meta, sep = self.filename, self.schema, self.meta, self.sep
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
        self.hdr = LogHeader(
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
        if len(self.hdr.set_separator) != 1:
            raise LogFormatError(filename, at_lineno, "set separator must be one character")

    def _meta_line(self, line: str) -> None:
        if self.seg_open is False and self.hdr is not None and not line.startswith("#close"):
            # a new header block after data: concatenated logs
            self.meta = {}
            self.hdr = None
        key, value = _parse_meta_line(line, self.sep)
        if key == "separator":
            self.sep = unescape_header(value.strip())
            if not self.sep:
                raise LogFormatError(self.filename, self.lineno, "empty #separator")
        elif key == "close":
            if self.hdr is not None:
                self.hdr.close = value
            else:
                self.meta["close"] = value
        else:
            self.meta[key] = value
        self.seg_open = key != "close" and self.hdr is None

    def scan(self, data: bytes) -> list[Segment]:
        """The segments of one chunk (offsets into ``data``)."""
        segs: list[Segment] = []
        n = len(data)
        pos = 0
        while pos < n:
            if data[pos:pos + 1] == b"#":
                nl = data.find(b"\n", pos)
                end = n if nl < 0 else nl
                self._meta_line(data[pos:end].decode("utf-8", "surrogateescape"))
                pos = end + 1
                self.lineno += 1
                continue
            # data: runs until the next line starting with '#'
            if self.hdr is None:
                self._finish_header(self.lineno)
            nxt = data.find(b"\n#", pos)
            body_end = n if nxt < 0 else nxt + 1
            rows = data.count(b"\n", pos, body_end)
            if body_end == n and not data.endswith(b"\n"):
                rows += 1
            segs.append(Segment(self.hdr, pos, body_end, self.lineno, rows))
            self.bodies += 1
            self.lineno += rows
            pos = body_end
            self.seg_open = False
        return segs

    def finish(self) -> list[Segment]:
        """After the last chunk: a header with no rows gives one empty segment."""
        if self.hdr is None and (self.meta or not self.bodies):
            # header only (no rows) or an empty file
            if self.meta or self.schema is not None:
                self._finish_header(self.lineno)
                self.bodies += 1
                return [Segment(self.hdr, 0, 0, self.lineno)]
            raise LogFormatError(self.filename, None, "empty file: no Zeek header")
        return []


def split_segments(data: bytes, filename, schema: Schema | None) -> list[Segment]:
    """Split a whole TSV log into header blocks and the data bodies they describe."""
    scanner = SegmentScanner(filename, schema)
    return scanner.scan(data) + scanner.finish()


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
