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

The parts, each with the format rules it follows (learned from Zeek 9.1:
logging/writers/ascii/Ascii.cc, threading/formatters/Ascii.cc and JSON.cc,
util.cc, Desc.cc): ``formatting`` (single values and type checks both
formats share), ``tsv_format`` (header and TSV rows), ``json_format`` (JSON
rows), ``log_file`` (``LogWriter``: buffering, rotation, a full disk),
``disk_room`` (space kept past a file's end).
"""

from __future__ import annotations

from .disk_room import keep_room
from .formatting import format_addr, format_double, format_time
from .json_format import format_json_double, format_json_row
from .log_file import LogWriter
from .tsv_format import format_tsv_row, open_close_timestamp, tsv_header

__all__ = [
    "LogWriter",
    "keep_room",
    "format_addr",
    "format_double",
    "format_json_double",
    "format_json_row",
    "format_time",
    "format_tsv_row",
    "open_close_timestamp",
    "tsv_header",
]
